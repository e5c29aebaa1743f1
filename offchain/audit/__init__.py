"""offchain.audit"""
