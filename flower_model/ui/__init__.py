"""What the Streamlit pages share.

`figures` is pure plotly (no streamlit); `session` holds the few streamlit helpers the pages
share: the process-wide caches (job board, loaded classifiers) and the chosen dataset.
"""
