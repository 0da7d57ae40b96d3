"""docs/protecting-routes.md: the application's pages under a prefix may load more than
Bastion's strict policy allows (run by tests/unit/test_docs_snippets.py)."""

# --8<-- [start:install]
from fastapi import FastAPI

from bastion.fastapi import install

app = FastAPI()
install(
    app,
    csp_additions={
        "/reports": {"img-src": ["https://charts.example"]},
        "/videos": {"frame-src": ["https://www.youtube-nocookie.com"]},
    },
)
# --8<-- [end:install]


@app.get("/reports/weekly")
async def weekly() -> dict[str, str]:
    return {"chart": "https://charts.example/weekly.png"}
