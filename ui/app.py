"""LightPool's Streamlit app: a router with one page per role.

Run with ``streamlit run ui/app.py`` (the demo starts it with ``lightpool demo``).
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="LightPool", page_icon=":material/water_drop:", layout="wide")

pages = [
    st.Page("pages/investor.py", title="Investor", icon=":material/account_balance_wallet:",
            url_path="investor", default=True),
    st.Page("pages/overlay.py", title="Overlay manager", icon=":material/rule:",
            url_path="overlay"),
    st.Page("pages/committee.py", title="Investment committee", icon=":material/tune:",
            url_path="committee"),
    st.Page("pages/issuer.py", title="Issuer", icon=":material/factory:", url_path="issuer"),
    st.Page("pages/auditor.py", title="Auditor", icon=":material/search:", url_path="auditor"),
]
st.navigation(pages).run()
