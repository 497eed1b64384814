//! `mobium-testnet`: the library behind the `testnet` command (launching homeservers and a DNS
//! server on loopback, scripted scenarios, chaos, benchmarks). Empty until the testnet issue.
