"""View models for the Streamlit UI: everything a page shows or does, computed here.

Pages in ``ui/pages`` only lay out what these functions return, so every figure the UI
shows is testable without a browser.
"""
