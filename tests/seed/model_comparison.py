# The seed's model comparison snippet, as written for Upstash Box: the same file and prompt in
# one box per model, side by side. tests/test_examples.py runs it against Burrow with
# only the import line and the model names changed.
import asyncio

from pydantic import BaseModel
from upstash_box import Agent, AsyncBox

models = ["anthropic/claude-sonnet-4-5", "openai/gpt-5"]
docs = open("api_docs.md").read()


class Endpoints(BaseModel):
    endpoints: list[str]


async def main():
    boxes = await asyncio.gather(*(
        AsyncBox.create(runtime="python", agent={"harness": Agent.CODEX, "model": model})
        for model in models
    ))
    await asyncio.gather(*(box.files.write("/workspace/api_docs.md", docs) for box in boxes))

    runs = await asyncio.gather(*(
        box.agent.run(
            prompt="Extract all API endpoints from /workspace/api_docs.md",
            response_schema=Endpoints,
        )
        for box in boxes
    ))
    for model, run in zip(models, runs):
        print(model, run.status, run.result.endpoints if run.result else run.error)

    await asyncio.gather(*(box.delete() for box in boxes))


asyncio.run(main())
