"""offchain.optimizer"""
