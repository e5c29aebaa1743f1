"""Investment committee: view a model portfolio, its history, and edit it as a new version."""

from __future__ import annotations

import json

import pandas as pd
import shared
import streamlit as st

from offchain.errors import InvalidInput
from offchain.views import models as model_views

# Session-state keys of this page.
MODEL = "committee.model"
AUTHOR = "committee.author"
NOTE = "committee.note"
DOCUMENT = "committee.document"
SAVED = "committee.saved"

st.title("Investment committee")
store = shared.model_store()
model_id = st.selectbox("Model", store.model_ids(), key=MODEL)
current = store.get(model_id)
model = current.model
st.caption(f"{model.name}: risk category {model.risk_category}, version {current.version} by "
           f"{current.author} on {current.edited_at:%Y-%m-%d %H:%M} UTC ({current.note})")

left, right = st.columns(2)
left.dataframe(model_views.targets_table(model), hide_index=True, width="stretch")
right.dataframe(model_views.securities_table(model), hide_index=True, width="stretch")

st.subheader("History")
st.dataframe(pd.DataFrame(model_views.history_rows(store, model_id)), hide_index=True,
             width="stretch")

st.subheader("Edit")
if SAVED in st.session_state:
    st.success(st.session_state.pop(SAVED))
with st.form("committee.edit"):
    document = st.text_area("Model (JSON)", value=model_views.editable_json(model), height=400,
                            key=f"{DOCUMENT}.{model_id}.{current.version}")
    author = st.text_input("Author", key=AUTHOR)
    note = st.text_input("Note (why)", key=NOTE)
    submitted = st.form_submit_button("Save as new version")
if submitted:
    try:
        saved = model_views.save_edit(store, document, author, note)
    except InvalidInput as exc:
        st.error(f"Not saved: {exc}")
    except json.JSONDecodeError as exc:
        st.error(f"Not saved: the model is not valid JSON ({exc})")
    else:
        st.session_state[SAVED] = (f"Saved {saved.model.model_id} version {saved.version} by "
                                   f"{saved.author}.")
        st.rerun()
