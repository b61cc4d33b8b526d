// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

interface IERC20 {
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title Disperse
/// @notice Pays many recipients of one ERC-20 in one transaction: the treasury's batched USDC
///         payouts of M-Pesa deposits.
/// @dev Every payment is ``token.transferFrom(msg.sender, recipient, amount)``: the contract holds
///      nothing and has no owner, and a caller can only ever spend its own allowance, so
///      approving it is no wider than approving any ERC-20 spender. Each payment is a Transfer
///      log from the caller (the treasury), one per recipient, in the order given. Any failed
///      payment reverts the whole batch (nobody is paid): the caller then pays them one by one.
contract Disperse {
    error LengthMismatch(uint256 recipients, uint256 amounts);
    error TransferFailed(uint256 index);

    function disperse(address token, address[] calldata recipients, uint256[] calldata amounts)
        external
    {
        if (recipients.length != amounts.length) {
            revert LengthMismatch(recipients.length, amounts.length);
        }
        IERC20 erc20 = IERC20(token);
        for (uint256 i = 0; i < recipients.length; i++) {
            if (!erc20.transferFrom(msg.sender, recipients[i], amounts[i])) revert TransferFailed(i);
        }
    }
}
