//! Replies statewall sends on its own: TCP RST and ICMP unreachable packets (pure builders).
