"""offchain.models"""
