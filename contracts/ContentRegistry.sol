// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title ContentRegistry
/// @notice Records who first registered a content hash (keccak256 of a file's bytes) and where its
///         manifest lives (an ipfs:// URI), so anyone can later check a file against its creator.
/// @dev Anyone may register; the creator is msg.sender, and the first registration of a hash
///      wins: a later one reverts, so a copier can never take over someone else's content.
contract ContentRegistry {
    struct Entry {
        address creator;
        uint64 registeredAt;
        uint64 blockNumber;
        string manifestURI;
    }

    mapping(bytes32 => Entry) private entries;

    event ContentRegistered(bytes32 indexed contentHash, address indexed creator, string manifestURI);

    error AlreadyRegistered(bytes32 contentHash);
    error EmptyHash();

    function register(bytes32 contentHash, string calldata manifestURI) external {
        if (contentHash == bytes32(0)) revert EmptyHash();
        if (entries[contentHash].creator != address(0)) revert AlreadyRegistered(contentHash);
        entries[contentHash] = Entry(msg.sender, uint64(block.timestamp), uint64(block.number), manifestURI);
        emit ContentRegistered(contentHash, msg.sender, manifestURI);
    }

    /// @return creator the zero address when the hash was never registered
    function entry(bytes32 contentHash)
        external
        view
        returns (address creator, string memory manifestURI, uint64 registeredAt, uint64 blockNumber)
    {
        Entry storage e = entries[contentHash];
        return (e.creator, e.manifestURI, e.registeredAt, e.blockNumber);
    }

    function isRegistered(bytes32 contentHash) external view returns (bool) {
        return entries[contentHash].creator != address(0);
    }
}
