"""offchain.chain"""
