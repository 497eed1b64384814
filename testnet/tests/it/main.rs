//! Integration tests of the testnet: real networks started through the library.
