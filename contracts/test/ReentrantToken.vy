# pragma version ~=0.4.3
# pragma evm-version prague
"""
@title ReentrantToken
@custom:contract-name ReentrantToken
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. A minimal ERC-20 that, when armed, calls back into a target contract in
        the middle of `transfer`/`transferFrom` with attacker-chosen calldata, and records
        whether that call succeeded. LightPool's tests list it as a market to show that a
        token re-entering on transfer gains nothing.
@custom:security Never deploy outside tests.
"""

# @dev Balances and allowances of the plain ERC-20 part.
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])

# @dev Total units minted.
totalSupply: public(uint256)

# @dev The contract to call back into and the calldata to send it (one shot).
target: public(address)
attack_data: public(Bytes[1024])
armed: public(bool)

# @dev Whether the callback was attempted and whether it succeeded.
reentered: public(bool)
reentry_succeeded: public(bool)


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


event Armed:
    target: indexed(address)


@deploy
def __init__():
    """
    @dev Deploys an empty token.
    """
    pass


@external
def mint(owner: address, amount: uint256):
    """
    @dev Mints freely (test token).
    @param owner Receiver.
    @param amount Units.
    """
    self.balanceOf[owner] += amount
    self.totalSupply += amount
    log Transfer(sender=empty(address), receiver=owner, value=amount)


@external
def arm(target: address, data: Bytes[1024]):
    """
    @dev Arms one callback into `target` with `data` at the next transfer.
    @param target The contract to re-enter.
    @param data The calldata.
    """
    self.target = target
    self.attack_data = data
    self.armed = True
    self.reentered = False
    self.reentry_succeeded = False
    log Armed(target=target)


@external
def approve(spender: address, amount: uint256) -> bool:
    """
    @dev ERC-20 approve.
    @param spender Spender.
    @param amount Allowance.
    @return bool True.
    """
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transfer(receiver: address, amount: uint256) -> bool:
    """
    @dev ERC-20 transfer with the armed callback first.
    @param receiver Receiver.
    @param amount Units.
    @return bool True.
    """
    self._attack()
    self.balanceOf[msg.sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=msg.sender, receiver=receiver, value=amount)
    return True


@external
def transferFrom(owner: address, receiver: address, amount: uint256) -> bool:
    """
    @dev ERC-20 transferFrom with the armed callback first.
    @param owner Sender.
    @param receiver Receiver.
    @param amount Units.
    @return bool True.
    """
    self._attack()
    self.allowance[owner][msg.sender] -= amount
    self.balanceOf[owner] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=owner, receiver=receiver, value=amount)
    return True


@internal
def _attack():
    if self.armed:
        self.armed = False
        self.reentered = True
        self.reentry_succeeded = raw_call(
            self.target, self.attack_data, max_outsize=0, revert_on_failure=False
        )
