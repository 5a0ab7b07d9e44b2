"""Flower Lens: navigation between the pages. Nothing heavy happens here."""

import streamlit as st

st.set_page_config(page_title="Flower Lens", page_icon="🌼", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon="🌼", default=True),
        st.Page("pages/explore.py", title="Explore", icon="🔎"),
        st.Page("pages/train.py", title="Train", icon="🏋️"),
        st.Page("pages/evaluate.py", title="Evaluate", icon="📊"),
        st.Page("pages/classify.py", title="Classify", icon="📷"),
    ]
)
navigation.run()
