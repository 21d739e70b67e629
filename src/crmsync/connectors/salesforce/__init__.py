"""The Salesforce connector: a thin httpx client for the REST API (see :mod:`.connector`)."""

from crmsync.connectors.salesforce.client import SalesforceClient
from crmsync.connectors.salesforce.connector import SalesforceConnector
from crmsync.connectors.salesforce.settings import SalesforceSettings

__all__ = ["SalesforceClient", "SalesforceConnector", "SalesforceSettings"]
