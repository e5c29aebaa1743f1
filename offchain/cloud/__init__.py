"""offchain.cloud"""
