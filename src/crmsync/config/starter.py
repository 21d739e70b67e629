"""The commented starter ``crmsync.yaml`` that ``crmsync init`` writes.

It is the usage-billing workflow: an application submits usage entries, crmsync writes them to a
``Usage__c`` custom object in Salesforce, and a fulfilled contract locks its entries. Credentials
are the variables ``crmsync sandbox --seed billing --env-file .env`` writes, so the file works
against the sandbox as it is and against a real org once the variables point there.
"""

from __future__ import annotations

from pathlib import Path

#: the sandbox command the starter file works against: ``billing`` defines ``Usage__c`` and contracts
SANDBOX_SEED = "billing"
SANDBOX_COMMAND = f"crmsync sandbox --seed {SANDBOX_SEED} --env-file .env"

#: variables the starter file needs (all written by :data:`SANDBOX_COMMAND`)
VARIABLES = (
    "SALESFORCE_INSTANCE_URL",
    "SALESFORCE_CLIENT_ID",
    "SALESFORCE_USERNAME",
    "SALESFORCE_JWT_KEY_FILE",
)

STARTER = """\
# crmsync.yaml: what crmsync connects to and what it keeps in sync.
# Reference: docs/configuration.md. Check it with `crmsync check`; see it resolved with
# `crmsync config show --origins`. Editors complete keys from `crmsync config schema`.
#
# ${VARIABLES} come from the environment, then from the .env file next to this file, then from
# their ${VARIABLE:-default}. To try it with no Salesforce account, run in another terminal,
# in this file's folder (the billing seed holds the Usage__c object and the contracts it uses):
#     crmsync sandbox --seed billing --env-file .env
# then: crmsync check --connect; crmsync token create my-app; crmsync run
version: 1

store:
  # Where crmsync keeps its queue, links and logs. One SQLite file is enough on one machine;
  # use PostgreSQL (postgresql+psycopg://user@host/db) to run many processes.
  url: ${CRMSYNC_STORE_URL:-sqlite:///crmsync.db}

web:
  host: 127.0.0.1
  port: 8080
  max_body_bytes: 1048576      # larger ingest bodies are answered 413
  max_batch: 1000              # records per ingest request

worker:
  concurrency: 4
  lease_seconds: 60
  poll_interval_seconds: 0.2
  batch_size: 200
  backoff: {initial_seconds: 1, factor: 2, max_seconds: 300, jitter: 0.2}
  max_attempts: 10             # a change failing on its own becomes a dead letter after 10 tries

connections:
  salesforce:
    type: salesforce
    auth: jwt                  # jwt | client_credentials | password | refresh_token
    login_url: ${SALESFORCE_LOGIN_URL:-https://login.salesforce.com}
    instance_url: ${SALESFORCE_INSTANCE_URL}
    client_id: ${SALESFORCE_CLIENT_ID}
    client_secret: ${SALESFORCE_CLIENT_SECRET:-}   # not needed by the jwt flow
    username: ${SALESFORCE_USERNAME}
    password: ${SALESFORCE_PASSWORD:-}             # password flow only
    private_key_file: ${SALESFORCE_JWT_KEY_FILE}
    ca_file: ${SALESFORCE_CA_FILE:-}     # extra CA bundle to trust (the sandbox's)
    api_version: "66.0"
    client_name: crmsync                 # marks crmsync's own writes, so they never come back
    daily_limit_guard: 0.9               # pause non-urgent work past 90% of the daily API limit
  app:
    type: app                            # your application, submitting through the ingest API

flows:
  usage:
    source: app
    target: salesforce
    object: Usage__c
    key: ad_id                           # the source field that identifies an entry
    match: {field: Ad_Id__c}             # upsert by this external-id field
    fields:
      - {source: ad_id, target: Ad_Id__c}
      - {source: contract_id, target: Contract__c}
      - {source: product, target: Product__c}
      - {source: quantity, target: Quantity__c, transform: number}
      - {source: billed, target: Billed__c, owner: target}    # Salesforce owns it: the app may not write it
    on_delete: delete                    # delete | ignore
    lock:                                # once the contract is fulfilled, its entries are frozen
      object: Contract
      key: contract_id
      when: "Status = 'Fulfilled'"
      message: "contract {contract_id} is fulfilled; its usage entries are locked"

views:
  contracts:                             # applications read contracts live, through crmsync
    connection: salesforce
    query: "SELECT Id, ContractNumber, Status FROM Contract WHERE AccountId = :account_id"
    params:
      account_id: {type: id, required: true}
"""


def write_starter(path: Path, *, force: bool = False) -> Path:
    """Write the starter file to ``path`` (a folder gets ``crmsync.yaml``); refuse to overwrite."""
    if path.is_dir():
        path = path / "crmsync.yaml"
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; use --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER, encoding="utf-8")
    return path
