# pragma version ~=0.4.3
# pragma evm-version prague
"""
@title Lens
@custom:contract-name Lens
@license GNU Affero General Public License v3.0 only
@notice Read-only batch views over LightPool for keepers, the UI and auditors: one
        `eth_call` returns what would otherwise take thousands of calls (every managed
        account's escrow balance in every token, the settlement state of many baskets).
        It holds no state and changes none.
@custom:security View functions only; nothing here can move funds.
"""


interface ILightPool:
    def balance_of(token: address, owner: address) -> uint256: view
    def basket_hash(basket_id: uint256) -> bytes32: view


# @dev Bounds of one call (keeps an eth_call well under a block's gas).
MAX_TOKENS: constant(uint256) = 32
MAX_OWNERS: constant(uint256) = 256
MAX_CELLS: constant(uint256) = MAX_TOKENS * MAX_OWNERS
MAX_IDS: constant(uint256) = 1024


@view
@external
def escrow_balances(
    pool: address,
    tokens: DynArray[address, MAX_TOKENS],
    owners: DynArray[address, MAX_OWNERS],
) -> DynArray[uint256, MAX_CELLS]:
    """
    @dev Free escrow balances, owner-major: result[i * len(tokens) + j] is owner i's
         balance of token j.
    @param pool The LightPool.
    @param tokens The tokens.
    @param owners The owners.
    @return DynArray The balances (18 decimals).
    """
    result: DynArray[uint256, MAX_CELLS] = []
    for owner: address in owners:
        for token: address in tokens:
            result.append(staticcall ILightPool(pool).balance_of(token, owner))
    return result


@view
@external
def unsettled(pool: address, ids: DynArray[uint256, MAX_IDS]) -> DynArray[bool, MAX_IDS]:
    """
    @dev Whether each basket still awaits settlement (its hash is stored).
    @param pool The LightPool.
    @param ids Basket ids.
    @return DynArray True where the basket is not settled yet.
    """
    result: DynArray[bool, MAX_IDS] = []
    for basket_id: uint256 in ids:
        result.append(staticcall ILightPool(pool).basket_hash(basket_id) != empty(bytes32))
    return result
