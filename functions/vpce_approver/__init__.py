"""vpce-approver: the Lambda domain package (policy, converge, adapters, handlers)."""
