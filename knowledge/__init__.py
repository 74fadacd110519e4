"""The shared knowledge base: what tenants' agents learn that can help other tenants.

Entry points (all in `knowledge.base.KnowledgeBase`, async):
    contribute(tenant, candidates, identifiers) -> cluster ids   the worker's contribute task
    search(query, limit, everyone, kinds=, since=, until=, floor=) -> [Insight]
    vote(tenant, insight_id, helpful) -> Insight | None         one vote per tenant
    withdraw(tenant) -> (removed, weakened)                     tenant deletion
    browse(limit, offset), remove(insight_id), size()           the operator
Parts: `distill` (general statements), `scrub` + `personal_ids` + `ner` (personal data),
`clusters` and `canonical` (k-anonymous text), `votes`, `prompt` (insights as quoted data),
`model` (the ChatModel protocol for a host-side model), `vectors` and `embedder` (engines).
"""
