"""tenant_agent."""
