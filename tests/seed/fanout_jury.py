# The seed's multi-agent orchestration snippet, as written for Upstash Box: three reviewer
# boxes in parallel, then a jury box. tests/test_examples.py runs it against Burrow with
# only the import line and the model names changed.
import asyncio

from upstash_box import Agent, AsyncBox, ClaudeCode

pr = "https://github.com/acme/app/pull/42"


async def main():
    agent = {"harness": Agent.CLAUDE_CODE, "model": ClaudeCode.SONNET_4_5}
    security, quality, architecture = await asyncio.gather(
        AsyncBox.create(runtime="node", agent=agent),
        AsyncBox.create(runtime="node", agent=agent),
        AsyncBox.create(runtime="node", agent=agent),
    )

    reviews = await asyncio.gather(
        security.agent.run(prompt=f"Review {pr} for security vulnerabilities"),
        quality.agent.run(prompt=f"Review {pr} for code quality issues"),
        architecture.agent.run(prompt=f"Review {pr} for architectural concerns"),
    )

    jury = await AsyncBox.create(runtime="node", agent=agent)
    summary = await jury.agent.run(
        prompt="Summarize these reviews into one comment for the pull request:\n\n"
        + "\n\n".join(str(review.result) for review in reviews)
    )
    print(summary.result)

    for box in (security, quality, architecture, jury):
        await box.delete()


asyncio.run(main())
