"""offchain.ledger"""
