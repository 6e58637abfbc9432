"""Slack escalation: the EscalationPort that posts approval messages, and the interactivity flow."""
