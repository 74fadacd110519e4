"""The model wing: the chat API boxes speak to the host, the providers behind it (Anthropic,
OpenAI, OpenRouter, local servers), tool emulation for tiny models, the bundled llama.cpp
servers, budgets, and the relay that lets third-party agent CLIs reach models through the
host. Knows nothing of HTTP routes, tenants or boxes."""
