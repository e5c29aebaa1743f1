"""offchain.keeper"""
