"""Object metadata: the standard objects the emulator knows, custom objects, and ``describe``.

A field is required on create when it is createable, not nillable and not defaulted on create,
exactly as a client reads it from ``describe``; validation in :mod:`.store` uses the same flags.
Names are looked up case-insensitively (as Salesforce does) and answered in their API spelling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crmsync.sandbox.salesforce.ids import KEY_PREFIXES

#: describe types whose values are JSON strings of bounded length
TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox"}
)
NUMBER_TYPES = frozenset({"double", "currency", "percent", "int", "long"})
#: the audit fields every object has; the server maintains them
AUDIT_FIELDS = ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp")

_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "long": "xsd:long",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
    "time": "xsd:time",
}


@dataclass(slots=True)
class FieldDef:
    name: str
    type: str
    label: str = ""
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    defaulted_on_create: bool = False
    default: Any = None
    external_id: bool = False
    unique: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    precision: int = 0
    scale: int = 0
    calculated: bool = False
    auto_number: bool = False
    custom: bool = False
    #: the relationship resolves to the ``Name`` object (``Task.What``, a queue-ownable ``Owner``)
    polymorphic: bool = False

    def __post_init__(self) -> None:
        if not self.label:
            base = self.name.removesuffix("__c").removesuffix("Id") or self.name
            self.label = base.replace("_", " ")
        if self.type in TEXT_TYPES and not self.length:
            self.length = {"textarea": 32000, "multipicklist": 4099}.get(self.type, 255)
        if self.type in ("id", "reference"):
            self.length = 18
        if self.type in ("currency", "double", "percent") and not self.precision:
            self.precision, self.scale = 18, 2
        if self.name.endswith("__c"):
            self.custom = True
        if len(self.reference_to) > 1:
            self.polymorphic = True

    @property
    def required(self) -> bool:
        return self.createable and not self.nillable and not self.defaulted_on_create

    def describe(self) -> dict[str, Any]:
        return {
            "aggregatable": self.type not in ("textarea", "multipicklist"),
            "autoNumber": self.auto_number,
            "byteLength": self.length * 3
            if self.type in TEXT_TYPES or self.type in ("id", "reference")
            else 0,
            "calculated": self.calculated,
            "caseSensitive": False,
            "createable": self.createable,
            "custom": self.custom,
            "defaultValue": self.default if self.type != "picklist" else None,
            "defaultedOnCreate": self.defaulted_on_create,
            "digits": 0,
            "externalId": self.external_id,
            "filterable": self.type != "textarea",
            "groupable": self.type not in ("textarea", "double", "currency", "percent", "datetime"),
            "idLookup": self.type == "id" or self.external_id,
            "label": self.label,
            "length": self.length,
            "name": self.name,
            "nameField": self.name == "Name",
            "namePointing": self.polymorphic,
            "nillable": self.nillable,
            "picklistValues": [
                {"active": True, "defaultValue": v == self.default, "label": v, "validFor": None, "value": v}
                for v in self.picklist
            ],
            "polymorphicForeignKey": self.polymorphic,
            "precision": self.precision,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted,
            "scale": self.scale,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.type not in ("textarea", "multipicklist"),
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


@dataclass
class ObjectDef:
    name: str
    key_prefix: str
    fields: dict[str, FieldDef]
    label: str = ""
    label_plural: str = ""
    custom: bool = False
    createable: bool = True
    #: lower-case field name -> field, for case-insensitive lookups
    by_lower: dict[str, FieldDef] = field(default_factory=dict)
    #: lower-case relationship name -> reference field
    relationships: dict[str, FieldDef] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.label = self.label or self.name.removesuffix("__c").replace("_", " ")
        self.label_plural = self.label_plural or self.label + "s"
        self.custom = self.custom or self.name.endswith("__c")
        self.reindex()

    def reindex(self) -> None:
        self.by_lower = {k.lower(): f for k, f in self.fields.items()}
        self.relationships = {
            f.relationship_name.lower(): f for f in self.fields.values() if f.relationship_name
        }

    def field(self, name: str) -> FieldDef | None:
        return self.by_lower.get(name.lower())

    def external_id_fields(self) -> list[FieldDef]:
        return [f for f in self.fields.values() if f.external_id]

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "compactLayouts": f"{base}/describe/compactLayouts",
            "rowTemplate": f"{base}/{{ID}}",
            "defaultValues": f"{base}/defaultValues?recordTypeId&fields",
            "describe": f"{base}/describe",
            "sobject": base,
        }

    def summary(self, version: str) -> dict[str, Any]:
        """The entry of ``GET /sobjects`` (and ``objectDescribe`` of ``GET /sobjects/X``)."""
        return {
            "activateable": False,
            "createable": self.createable,
            "custom": self.custom,
            "customSetting": False,
            "deletable": self.createable,
            "deprecatedAndHidden": False,
            "feedEnabled": False,
            "keyPrefix": self.key_prefix,
            "label": self.label,
            "labelPlural": self.label_plural,
            "layoutable": True,
            "mergeable": self.name in ("Account", "Contact", "Lead"),
            "mruEnabled": True,
            "name": self.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": self.createable,
            "updateable": self.createable,
            "urls": self.urls(version),
        }


def _f(name: str, type_: str, **kw: Any) -> FieldDef:
    return FieldDef(name, type_, **kw)


def _ro(name: str, type_: str, **kw: Any) -> FieldDef:
    """A field the server maintains (read-only through the API)."""
    return FieldDef(name, type_, createable=False, updateable=False, **kw)


def _ref(name: str, *targets: str, relationship: str | None = None, **kw: Any) -> FieldDef:
    rel = relationship or (name[:-2] if name.endswith("Id") else name.removesuffix("__c") + "__r")
    return FieldDef(name, "reference", reference_to=targets, relationship_name=rel, **kw)


def _pick(name: str, values: Iterable[str], *, default: str | None = None, **kw: Any) -> FieldDef:
    return FieldDef(
        name,
        "picklist",
        picklist=tuple(values),
        default=default,
        defaulted_on_create=default is not None,
        restricted=kw.pop("restricted", True),
        **kw,
    )


def system_fields(with_owner: bool = True, *, queue_owned: bool = False) -> list[FieldDef]:
    """Fields every object has; ``queue_owned`` objects (Lead, Task, custom objects) may be owned by a
    queue, so their ``Owner`` is polymorphic (queues are not emulated: owners are Users)."""
    out = [
        FieldDef("Id", "id", label="Record ID", nillable=False, createable=False, updateable=False),
        _ro("IsDeleted", "boolean", label="Deleted", nillable=False, defaulted_on_create=True, default=False),
        _ro("CreatedDate", "datetime", nillable=False, defaulted_on_create=True),
        _ro(
            "CreatedById",
            "reference",
            nillable=False,
            defaulted_on_create=True,
            reference_to=("User",),
            relationship_name="CreatedBy",
        ),
        _ro("LastModifiedDate", "datetime", nillable=False, defaulted_on_create=True),
        _ro(
            "LastModifiedById",
            "reference",
            nillable=False,
            defaulted_on_create=True,
            reference_to=("User",),
            relationship_name="LastModifiedBy",
        ),
        _ro("SystemModstamp", "datetime", nillable=False, defaulted_on_create=True),
    ]
    if with_owner:
        out.append(
            _ref(
                "OwnerId",
                "User",
                nillable=False,
                defaulted_on_create=True,
                label="Owner ID",
                polymorphic=queue_owned,
            )
        )
    return out


OPPORTUNITY_STAGES: dict[str, tuple[bool, bool, int, str]] = {
    # stage: (IsClosed, IsWon, DefaultProbability, ForecastCategoryName)
    "Prospecting": (False, False, 10, "Pipeline"),
    "Qualification": (False, False, 10, "Pipeline"),
    "Needs Analysis": (False, False, 20, "Pipeline"),
    "Value Proposition": (False, False, 50, "Pipeline"),
    "Id. Decision Makers": (False, False, 60, "Pipeline"),
    "Perception Analysis": (False, False, 70, "Pipeline"),
    "Proposal/Price Quote": (False, False, 75, "Pipeline"),
    "Negotiation/Review": (False, False, 90, "Pipeline"),
    "Closed Won": (True, True, 100, "Closed"),
    "Closed Lost": (True, False, 0, "Omitted"),
}
LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Closed - Converted",
    "Closed - Not Converted",
)
CONTRACT_STATUSES = ("Draft", "In Approval Process", "Activated", "Fulfilled")
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
TASK_CLOSED_STATUSES = frozenset({"Completed"})
INDUSTRIES = (
    "Agriculture",
    "Banking",
    "Consulting",
    "Education",
    "Energy",
    "Healthcare",
    "Media",
    "Retail",
    "Technology",
    "Telecommunications",
    "Other",
)
LEAD_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")


#: standard objects a queue may own (their Owner is polymorphic)
QUEUE_OWNED = frozenset({"Lead", "Task"})


def standard_objects() -> list[ObjectDef]:
    """Fresh definitions of the standard objects (fresh objects: custom objects may add relationships)."""

    def obj(name: str, fields: list[FieldDef], *, with_owner: bool = True, **kw: Any) -> ObjectDef:
        all_fields = system_fields(with_owner, queue_owned=name in QUEUE_OWNED) + fields
        return ObjectDef(name, KEY_PREFIXES[name], {f.name: f for f in all_fields}, **kw)

    return [
        obj(
            "User",
            [
                _f("Username", "string", length=80, nillable=False),
                _f("FirstName", "string", length=40),
                _f("LastName", "string", length=80, nillable=False),
                _ro("Name", "string", length=121, calculated=True),
                _f("Email", "email", length=128, nillable=False),
                _f("Alias", "string", length=8, nillable=False),
                _f(
                    "IsActive",
                    "boolean",
                    nillable=False,
                    defaulted_on_create=True,
                    default=True,
                    label="Active",
                ),
            ],
            with_owner=False,
            createable=False,
        ),
        obj(
            "Account",
            [
                _f("Name", "string", nillable=False, label="Account Name"),
                _pick(
                    "Type",
                    ("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"),
                    restricted=False,
                ),
                _pick("Industry", INDUSTRIES, restricted=False),
                _f("Phone", "phone", length=40),
                _f("Website", "url"),
                _f("BillingStreet", "textarea", length=255),
                _f("BillingCity", "string", length=40),
                _f("BillingPostalCode", "string", length=20),
                _f("BillingCountry", "string", length=80),
                _f("AnnualRevenue", "currency"),
                _f("NumberOfEmployees", "int", precision=8),
                _f("Description", "textarea"),
                _ref("ParentId", "Account", relationship="Parent"),
            ],
        ),
        obj(
            "Contact",
            [
                _f("FirstName", "string", length=40),
                _f("LastName", "string", length=80, nillable=False),
                _ro("Name", "string", length=121, calculated=True, label="Full Name"),
                _f("Email", "email", length=80),
                _f("Phone", "phone", length=40),
                _f("Title", "string", length=128),
                _pick("LeadSource", LEAD_SOURCES, restricted=False),
                _ref("AccountId", "Account"),
                _f("Description", "textarea"),
            ],
        ),
        obj(
            "Lead",
            [
                _f("FirstName", "string", length=40),
                _f("LastName", "string", length=80, nillable=False),
                _ro("Name", "string", length=121, calculated=True, label="Full Name"),
                _f("Company", "string", nillable=False),
                _f("Email", "email", length=80),
                _f("Phone", "phone", length=40),
                _f("Title", "string", length=128),
                _pick("Status", LEAD_STATUSES, default="Open - Not Contacted", nillable=False),
                _pick("LeadSource", LEAD_SOURCES, restricted=False),
                _pick("Industry", INDUSTRIES, restricted=False),
                _f("Description", "textarea"),
                _ro(
                    "IsConverted",
                    "boolean",
                    nillable=False,
                    defaulted_on_create=True,
                    default=False,
                    label="Converted",
                ),
                _ro("ConvertedDate", "date"),
                _ro(
                    "ConvertedAccountId",
                    "reference",
                    reference_to=("Account",),
                    relationship_name="ConvertedAccount",
                ),
                _ro(
                    "ConvertedContactId",
                    "reference",
                    reference_to=("Contact",),
                    relationship_name="ConvertedContact",
                ),
                _ro(
                    "ConvertedOpportunityId",
                    "reference",
                    reference_to=("Opportunity",),
                    relationship_name="ConvertedOpportunity",
                ),
            ],
        ),
        obj(
            "Opportunity",
            [
                _f("Name", "string", length=120, nillable=False),
                _ref("AccountId", "Account"),
                _pick("StageName", OPPORTUNITY_STAGES, nillable=False, label="Stage"),
                _f("CloseDate", "date", nillable=False),
                _f("Amount", "currency"),
                _f("Probability", "percent", precision=3, scale=0, defaulted_on_create=True),
                _pick(
                    "Type",
                    (
                        "Existing Customer - Upgrade",
                        "Existing Customer - Replacement",
                        "Existing Customer - Downgrade",
                        "New Customer",
                    ),
                    restricted=False,
                ),
                _pick("LeadSource", LEAD_SOURCES, restricted=False),
                _f("NextStep", "string"),
                _f("Description", "textarea"),
                _ro("IsClosed", "boolean", nillable=False, defaulted_on_create=True, label="Closed"),
                _ro("IsWon", "boolean", nillable=False, defaulted_on_create=True, label="Won"),
                _ro(
                    "ForecastCategory",
                    "picklist",
                    picklist=("Omitted", "Pipeline", "BestCase", "Forecast", "Closed"),
                    nillable=False,
                    defaulted_on_create=True,
                ),
                _ro(
                    "ForecastCategoryName",
                    "picklist",
                    picklist=("Omitted", "Pipeline", "Best Case", "Commit", "Closed"),
                    defaulted_on_create=True,
                ),
            ],
        ),
        obj(
            "Task",
            [
                _f("Subject", "combobox", picklist=("Call", "Send Letter", "Send Quote", "Other")),
                _pick("Status", TASK_STATUSES, default="Not Started", nillable=False),
                _pick("Priority", ("High", "Normal", "Low"), default="Normal", nillable=False),
                _pick("Type", ("Call", "Email", "Meeting", "Other"), restricted=False),
                _f("ActivityDate", "date", label="Due Date Only"),
                _ref("WhoId", "Contact", "Lead", relationship="Who", label="Name ID"),
                _ref(
                    "WhatId", "Account", "Opportunity", "Contract", relationship="What", label="Related To ID"
                ),
                _ref("AccountId", "Account", createable=False, updateable=False),
                _f("Description", "textarea"),
                _ro("IsClosed", "boolean", nillable=False, defaulted_on_create=True, label="Closed"),
            ],
        ),
        obj(
            "Report",
            [
                _ro("Name", "string", length=40, nillable=False, label="Report Name"),
                _ro("DeveloperName", "string", length=80, nillable=False),
                _ro("FolderName", "string", length=255),
                _ro("Format", "picklist", picklist=("Tabular", "Summary", "Matrix", "MultiBlock")),
                _ro("Description", "textarea", length=255),
                _ro("LastRunDate", "datetime"),
            ],
            createable=False,
        ),
        obj(
            "Contract",
            [
                _ref("AccountId", "Account", nillable=False),
                _f("Name", "string", length=80, label="Contract Name"),
                _ro(
                    "ContractNumber",
                    "string",
                    length=30,
                    auto_number=True,
                    nillable=False,
                    defaulted_on_create=True,
                ),
                _pick("Status", CONTRACT_STATUSES, default="Draft", nillable=False),
                _f("StartDate", "date", label="Contract Start Date"),
                _f("ContractTerm", "int", precision=4, label="Contract Term"),
                _ro("EndDate", "date", calculated=True, label="Contract End Date"),
                _f("Description", "textarea"),
            ],
        ),
    ]


def custom_object(name: str, key_prefix: str, spec: Mapping[str, Any]) -> ObjectDef:
    """A custom object from a JSON-able spec::

        {"label": "Usage", "fields": {"Ad_Id__c": {"type": "string", "externalId": true, "unique": true},
                                      "Contract__c": {"type": "reference", "referenceTo": "Contract"},
                                      "Quantity__c": {"type": "double"}}}

    Field keys: ``type``, ``label``, ``length``, ``required``, ``externalId``, ``unique``,
    ``picklistValues``, ``default``, ``referenceTo``, ``relationshipName``. Every custom object has a
    ``Name`` text field (optional on create).
    """
    if not name.endswith("__c"):
        raise ValueError(f"custom object names end with __c: {name!r}")
    fields = [
        *system_fields(queue_owned=True),
        FieldDef("Name", "string", length=80, label=f"{name[:-3]} Name"),
    ]
    for fname, fspec in spec.get("fields", {}).items():
        if not fname.endswith("__c"):
            raise ValueError(f"custom field names end with __c: {name}.{fname}")
        type_ = fspec.get("type", "string")
        target = fspec.get("referenceTo")
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        if type_ == "reference" and not targets:
            raise ValueError(f"{name}.{fname}: a reference needs referenceTo")
        default = fspec.get("default")
        fields.append(
            FieldDef(
                fname,
                type_,
                label=fspec.get("label", ""),
                length=int(fspec.get("length", 0)),
                nillable=not fspec.get("required", False),
                external_id=bool(fspec.get("externalId", False)),
                unique=bool(fspec.get("unique", False)),
                picklist=tuple(fspec.get("picklistValues", ())),
                restricted=bool(fspec.get("restricted", type_ == "picklist")),
                default=default,
                defaulted_on_create=default is not None,
                reference_to=targets,
                relationship_name=fspec.get("relationshipName") or (fname[:-3] + "__r" if targets else None),
            )
        )
    return ObjectDef(name, key_prefix, {f.name: f for f in fields}, label=spec.get("label", ""))


class Schema:
    """The objects of one org, looked up case-insensitively."""

    def __init__(self, objects: Iterable[ObjectDef] = ()) -> None:
        self.objects: dict[str, ObjectDef] = {}
        self._lower: dict[str, ObjectDef] = {}
        self._by_prefix: dict[str, ObjectDef] = {}
        self.replace(objects)

    def replace(self, objects: Iterable[ObjectDef]) -> None:
        """Forget every object, then define ``objects``."""
        self.objects.clear()
        self._lower.clear()
        self._by_prefix.clear()
        for o in objects:
            self.add(o)

    def add(self, obj: ObjectDef) -> None:
        if obj.name.lower() in self._lower:
            raise ValueError(f"object {obj.name} is already defined")
        self.objects[obj.name] = obj
        self._lower[obj.name.lower()] = obj
        self._by_prefix[obj.key_prefix] = obj

    def remove(self, name: str) -> None:
        obj = self._lower.pop(name.lower())
        del self.objects[obj.name]
        del self._by_prefix[obj.key_prefix]

    def get(self, name: str) -> ObjectDef | None:
        return self._lower.get(name.lower())

    def by_prefix(self, prefix: str) -> ObjectDef | None:
        return self._by_prefix.get(prefix)

    def next_custom_prefix(self) -> str:
        n = 0
        while True:
            prefix = f"a{n // 36:01d}{'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'[n % 36]}"
            if prefix not in self._by_prefix:
                return prefix
            n += 1

    def child_relationships(self, name: str) -> list[dict[str, Any]]:
        out = []
        for child in self.objects.values():
            for f in child.fields.values():
                if name in f.reference_to and f.relationship_name and f.name not in AUDIT_FIELDS:
                    plural = (
                        child.label_plural.replace(" ", "") if not child.custom else child.name[:-3] + "s__r"
                    )
                    out.append(
                        {
                            "cascadeDelete": False,
                            "childSObject": child.name,
                            "deprecatedAndHidden": False,
                            "field": f.name,
                            "relationshipName": plural if f.name != "OwnerId" else None,
                            "restrictedDelete": False,
                        }
                    )
        return out

    def describe(self, obj: ObjectDef, version: str) -> dict[str, Any]:
        return {
            **obj.summary(version),
            "childRelationships": self.child_relationships(obj.name),
            "fields": [f.describe() for f in obj.fields.values()],
            "recordTypeInfos": [
                {
                    "active": True,
                    "available": True,
                    "defaultRecordTypeMapping": True,
                    "developerName": "Master",
                    "master": True,
                    "name": "Master",
                    "recordTypeId": "012000000000000AAA",
                    "urls": {"layout": f"{obj.urls(version)['describe']}/layouts/012000000000000AAA"},
                }
            ],
            "urls": obj.urls(version),
        }
