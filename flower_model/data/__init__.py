"""Photos and datasets: loading, scanning, splitting, duplicate groups, decisions, uploads."""
