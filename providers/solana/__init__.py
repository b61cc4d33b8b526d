"""Solana provider: Token-2022 NFT tickets over the solana AsyncClient and solders."""
