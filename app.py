"""Flower Lens: navigation between the pages. Nothing heavy happens here."""

import streamlit as st

from flower_model.ui import session

st.set_page_config(page_title="Flower Lens", page_icon=":material/local_florist:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/local_florist:", default=True),
        st.Page("pages/explore.py", title="Explore", icon=":material/photo_library:"),
        st.Page("pages/data_issues.py", title="Data issues", icon=":material/fact_check:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("pages/classify.py", title="Classify", icon=":material/image_search:"),
    ]
)
session.settle_server()  # the imports frozen once, before the page runs: see there
session.account_ui()
# A line above the page while the workspace cannot be written: said before the page runs (a
# page that stops early draws nothing after), and after it, if this run found it.
notice = st.empty()
session.unwritten_caches_ui(notice)
try:
    navigation.run()
finally:
    session.unwritten_caches_ui(notice)
