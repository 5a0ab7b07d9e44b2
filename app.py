"""Flower Lens: placeholder home page until the app lands (see the app issue)."""

import streamlit as st

st.set_page_config(page_title="Flower Lens", page_icon="🌼")
st.title("Flower Lens")
st.write(
    "The app is being built. Meanwhile the command line works: `python -m flower_model --help`."
)
