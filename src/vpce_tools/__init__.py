"""Tools around vpce-approver: the offline PrivateLink emulator and friends."""
