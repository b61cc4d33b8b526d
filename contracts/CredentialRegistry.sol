// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title CredentialRegistry
/// @notice Anchors a credential's data hash and IPFS CID, or the Merkle root of a batch of them.
/// @dev Only the issuer (Settle's treasury wallet, through its wallet writer) may anchor. An
///      anchor is final: a credential id or a root is written once.
contract CredentialRegistry {
    struct Credential {
        bytes32 dataHash;
        string cid;
        uint64 anchoredAt;
        uint64 blockNumber;
    }

    struct Root {
        uint32 count;
        uint64 anchoredAt;
        uint64 blockNumber;
    }

    address public owner;
    address public issuer;
    mapping(bytes32 => Credential) private credentials;
    mapping(bytes32 => Root) private roots;

    event Anchored(bytes32 indexed credentialId, bytes32 dataHash, string cid);
    event RootAnchored(bytes32 indexed root, uint32 count);
    event IssuerChanged(address indexed previousIssuer, address indexed newIssuer);

    error NotIssuer();
    error NotOwner();
    error AlreadyAnchored(bytes32 key);
    error EmptyHash();

    constructor(address issuer_) {
        owner = msg.sender;
        issuer = issuer_;
        emit IssuerChanged(address(0), issuer_);
    }

    modifier onlyIssuer() {
        if (msg.sender != issuer) revert NotIssuer();
        _;
    }

    function setIssuer(address newIssuer) external {
        if (msg.sender != owner) revert NotOwner();
        emit IssuerChanged(issuer, newIssuer);
        issuer = newIssuer;
    }

    function anchor(bytes32 credentialId, bytes32 dataHash, string calldata cid) external onlyIssuer {
        if (dataHash == bytes32(0)) revert EmptyHash();
        if (credentials[credentialId].anchoredAt != 0) revert AlreadyAnchored(credentialId);
        credentials[credentialId] = Credential(dataHash, cid, uint64(block.timestamp), uint64(block.number));
        emit Anchored(credentialId, dataHash, cid);
    }

    function anchorRoot(bytes32 root, uint32 count) external onlyIssuer {
        if (root == bytes32(0)) revert EmptyHash();
        if (roots[root].anchoredAt != 0) revert AlreadyAnchored(root);
        roots[root] = Root(count, uint64(block.timestamp), uint64(block.number));
        emit RootAnchored(root, count);
    }

    function credential(bytes32 credentialId)
        external
        view
        returns (bytes32 dataHash, string memory cid, uint64 anchoredAt, uint64 blockNumber)
    {
        Credential storage c = credentials[credentialId];
        return (c.dataHash, c.cid, c.anchoredAt, c.blockNumber);
    }

    function rootOf(bytes32 root) external view returns (uint32 count, uint64 anchoredAt, uint64 blockNumber) {
        Root storage r = roots[root];
        return (r.count, r.anchoredAt, r.blockNumber);
    }
}
