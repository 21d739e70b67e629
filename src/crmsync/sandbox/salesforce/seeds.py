"""Seed data sets: ``empty``, ``demo`` (the three workflows) and ``billing`` (the usage-billing recipe).

Ids are stable: the id counters restart at every reset, and the records tests and recipes refer
to by id have fixed ids (the constants below).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from crmsync.sandbox.salesforce.ids import make_id
from crmsync.sandbox.salesforce.org import ReportDef

SEEDS = ("empty", "demo", "billing")

#: the custom object the demo and billing seeds define
USAGE_OBJECT: dict[str, Any] = {
    "label": "Usage",
    "fields": {
        "Ad_Id__c": {"type": "string", "length": 80, "externalId": True, "unique": True, "label": "Ad Id"},
        "Contract__c": {"type": "reference", "referenceTo": "Contract", "relationshipName": "Contract__r"},
        "Product__c": {"type": "string", "length": 80, "label": "Product"},
        "Quantity__c": {"type": "double", "label": "Quantity"},
        # set by finance in Salesforce; the starter file (`crmsync init`) maps it as Salesforce-owned
        "Billed__c": {"type": "boolean", "label": "Billed", "default": False},
    },
}

#: the demo report "Opportunities by stage" (tabular)
OPPORTUNITIES_REPORT_ID = make_id("00O", 1)
#: the demo report "Pipeline by stage" (summary: grouped by stage, amounts summed)
PIPELINE_REPORT_ID = make_id("00O", 2)
#: the billing report "Usage by contract" (summary: grouped by contract, quantities summed)
USAGE_REPORT_ID = make_id("00O", 3)
#: the billing report "Active contracts" (tabular, filtered on Status)
CONTRACTS_REPORT_ID = make_id("00O", 4)
#: billing seed: contract name -> id
BILLING_CONTRACTS = {
    "ACME-2026": make_id("800", 1001),
    "ACME-2025": make_id("800", 1002),
    "GLOBEX-2026": make_id("800", 1003),
}
BILLING_ACCOUNTS = {"Acme Corp": make_id("001", 1001), "Globex": make_id("001", 1002)}

#: insert(object, fields, record_id=None) -> id
Insert = Callable[..., str]


def load(
    name: str,
    insert: Insert,
    define: Callable[[str, dict[str, Any]], None],
    today: dt.date,
    add_report: Callable[[ReportDef], None],
) -> None:
    if name == "empty":
        return
    define("Usage__c", USAGE_OBJECT)
    if name == "demo":
        _demo(insert, today)
        columns = [
            ("Stage", "StageName"),
            ("Opportunity Name", "Name"),
            ("Account Name", "Account.Name"),
            ("Amount", "Amount"),
            ("Close Date", "CloseDate"),
            ("Opportunity ID", "Id"),
        ]
        add_report(
            ReportDef(OPPORTUNITIES_REPORT_ID, "Opportunities by stage", "Opportunity", columns, "StageName")
        )
        add_report(
            ReportDef(
                PIPELINE_REPORT_ID,
                "Pipeline by stage",
                "Opportunity",
                columns[1:],
                "Name",
                format="SUMMARY",
                grouping="StageName",
                aggregates=["s!Opportunity.Amount", "RowCount"],
            )
        )
    elif name == "billing":
        _billing(insert, today)
        add_report(
            ReportDef(
                USAGE_REPORT_ID,
                "Usage by contract",
                "Usage__c",
                [("Ad Id", "Ad_Id__c"), ("Product", "Product__c"), ("Quantity", "Quantity__c")],
                "Ad_Id__c",
                format="SUMMARY",
                grouping="Contract__r.Name",
                aggregates=["s!Usage__c.Quantity__c", "RowCount"],
            )
        )
        add_report(
            ReportDef(
                CONTRACTS_REPORT_ID,
                "Active contracts",
                "Contract",
                [("Contract Name", "Name"), ("Account Name", "Account.Name"), ("Status", "Status")],
                "Name",
                filters=[{"column": "Contract.Status", "operator": "equals", "value": "Activated"}],
            )
        )
    else:
        raise ValueError(f"unknown seed {name!r}; valid: {', '.join(SEEDS)}")


def _demo(insert: Insert, today: dt.date) -> None:
    def day(offset: int) -> str:
        return (today + dt.timedelta(days=offset)).isoformat()

    accounts = {
        name: insert("Account", {"Name": name, "Industry": industry, "Type": "Customer - Direct"})
        for name, industry in (
            ("Acme Corp", "Technology"),
            ("Globex", "Energy"),
            ("Initech", "Consulting"),
            ("Umbrella Health", "Healthcare"),
            ("Stark Retail", "Retail"),
        )
    }
    people = [
        ("Ada", "Lovelace", "Acme Corp"),
        ("Grace", "Hopper", "Acme Corp"),
        ("Hank", "Scorpio", "Globex"),
        ("Peter", "Gibbons", "Initech"),
        ("Bill", "Lumbergh", "Initech"),
        ("Alice", "Abernathy", "Umbrella Health"),
        ("Tony", "Rivers", "Stark Retail"),
        ("Pepper", "Potts", "Stark Retail"),
    ]
    contacts = [
        insert(
            "Contact",
            {
                "FirstName": first,
                "LastName": last,
                "Email": f"{first.lower()}.{last.lower()}@example.com",
                "AccountId": accounts[account],
            },
        )
        for first, last, account in people
    ]
    stages = [
        ("Acme expansion", "Acme Corp", "Prospecting", 12000.0, 30),
        ("Acme support renewal", "Acme Corp", "Negotiation/Review", 8000.0, 10),
        ("Globex rollout", "Globex", "Qualification", 45000.0, 45),
        ("Globex pilot", "Globex", "Closed Won", 5000.0, -20),
        ("Initech migration", "Initech", "Proposal/Price Quote", 30000.0, 20),
        ("Initech training", "Initech", "Closed Lost", 3000.0, -5),
        ("Umbrella analytics", "Umbrella Health", "Value Proposition", 60000.0, 60),
        ("Umbrella onboarding", "Umbrella Health", "Closed Won", 15000.0, -40),
        ("Stark stores", "Stark Retail", "Needs Analysis", 22000.0, 35),
        ("Stark loyalty app", "Stark Retail", "Id. Decision Makers", 18000.0, 50),
    ]
    opportunities = [
        insert(
            "Opportunity",
            {
                "Name": name,
                "AccountId": accounts[account],
                "StageName": stage,
                "Amount": amount,
                "CloseDate": day(offset),
            },
        )
        for name, account, stage, amount, offset in stages
    ]
    tasks = [
        ("[Delivery] Kick-off Acme expansion", opportunities[0], contacts[0], "Not Started", 3),
        ("[Delivery] Set up Globex pilot", opportunities[3], contacts[2], "In Progress", 1),
        ("[Delivery] Plan Umbrella onboarding", opportunities[7], contacts[5], "Not Started", 7),
        ("[Support] Acme login issue", accounts["Acme Corp"], contacts[1], "Completed", -2),
        ("Call back about pricing", opportunities[4], contacts[3], "Not Started", 2),
        ("Send quote", opportunities[8], contacts[6], "Waiting on someone else", 5),
    ]
    for subject, what, who, status, offset in tasks:
        insert(
            "Task",
            {"Subject": subject, "WhatId": what, "WhoId": who, "Status": status, "ActivityDate": day(offset)},
        )
    contracts = [
        insert(
            "Contract",
            {
                "AccountId": accounts["Acme Corp"],
                "Name": "Acme 2026",
                "Status": "Activated",
                "StartDate": day(-60),
                "ContractTerm": 12,
            },
        ),
        insert(
            "Contract",
            {
                "AccountId": accounts["Globex"],
                "Name": "Globex pilot",
                "Status": "Draft",
                "StartDate": day(10),
                "ContractTerm": 6,
            },
        ),
        insert(
            "Contract",
            {
                "AccountId": accounts["Initech"],
                "Name": "Initech 2025",
                "Status": "Fulfilled",
                "StartDate": day(-400),
                "ContractTerm": 12,
            },
        ),
    ]
    for n, (contract, product, quantity) in enumerate(
        [(contracts[0], "Banner", 3.0), (contracts[0], "Video", 1.0), (contracts[2], "Banner", 5.0)], start=1
    ):
        insert(
            "Usage__c",
            {
                "Name": f"U-{n:04d}",
                "Ad_Id__c": f"ad-{n}",
                "Contract__c": contract,
                "Product__c": product,
                "Quantity__c": quantity,
            },
        )


def _billing(insert: Insert, today: dt.date) -> None:
    for name, rid in BILLING_ACCOUNTS.items():
        insert("Account", {"Name": name, "Type": "Customer - Direct"}, record_id=rid)
    acme, globex = BILLING_ACCOUNTS["Acme Corp"], BILLING_ACCOUNTS["Globex"]
    start = today.replace(month=1, day=1)
    specs = [
        ("ACME-2026", acme, "Activated", start.isoformat()),
        ("ACME-2025", acme, "Fulfilled", start.replace(year=start.year - 1).isoformat()),
        ("GLOBEX-2026", globex, "Activated", start.isoformat()),
    ]
    for name, account, status, start_date in specs:
        insert(
            "Contract",
            {
                "AccountId": account,
                "Name": name,
                "Status": status,
                "StartDate": start_date,
                "ContractTerm": 12,
            },
            record_id=BILLING_CONTRACTS[name],
        )
    for n, (contract, product, quantity) in enumerate(
        [("ACME-2025", "Banner", 10.0), ("ACME-2025", "Video", 2.0), ("ACME-2026", "Banner", 4.0)], start=1
    ):
        insert(
            "Usage__c",
            {
                "Name": f"B-{n:04d}",
                "Ad_Id__c": f"billing-ad-{n}",
                "Contract__c": BILLING_CONTRACTS[contract],
                "Product__c": product,
                "Quantity__c": quantity,
            },
        )
