"""Taking a run out of the app: five formats, their model card, and the checks against the app."""
