"""The gateway's long-lived parts, wired once per process from the settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import strawberry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from adapters.mapping import Feed, load_feeds
from authz.store import Authorizer, install_default_policies
from gateway.crypto import AuditMac, FieldCipher, open_keyring
from gateway.domain.errors import ConfigurationError
from gateway.domain.settings import Settings
from gateway.loop.config import ProvinceRules, load_rules
from gateway.runtime import production
from gateway.runtime.client_tokens import ClientCredentials
from gateway.runtime.delivery import DeliveryWorker
from gateway.runtime.events import EventHub
from gateway.runtime.issuers import load_issuers
from gateway.runtime.peer_exchange import PeerExchange
from gateway.runtime.rate_limit import RateLimiter
from gateway.runtime.reads import GraphQLReads
from gateway.runtime.tokens import TokenService
from gateway.runtime.trusted_documents import TrustedDocuments
from gateway.storage.audit_chain import AuditWriter
from gateway.storage.engine import make_engine, make_sessionmaker
from gateway.storage.policy_listener import PolicyListener, listener_dsn
from gateway.storage.replica import ReplicaRouter, make_replica_engine
from gateway.storage.vault import PersonVault
from schema import build_schema
from schema.compiled import CompiledReads
from schema.limits import QueryLimits
from schema.purposes import purpose_labels


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    vault: PersonVault
    tokens: TokenService
    authorizer: Authorizer
    schema: strawberry.Schema
    purposes: dict[str, str]
    audit: AuditWriter
    feeds: dict[tuple[str, str], Feed]
    rules: ProvinceRules
    rate_limiter: RateLimiter
    trusted_documents: TrustedDocuments
    # Which database a GraphQL request reads from: the primary, or the streaming replica of
    # RELIEF_DATABASE_REPLICA_URL for lag-tolerant queries (issue 17 item 4).
    reads: GraphQLReads
    policy_listener: PolicyListener | None = field(default=None, init=False)
    # Webhook delivery inside `serve` (issue 18 item 2; RELIEF_DELIVERY_WORKER).
    delivery: DeliveryWorker | None = field(default=None, init=False)
    # Live worklists (issue 18 item 3): new outbox events handed to SSE subscriptions.
    events: EventHub | None = field(default=None, init=False)
    # Service accounts (issue 16 item 2): their ES256 key, verifier and disabled clients.
    clients: ClientCredentials | None = field(default=None, init=False)
    # Province to province (issue 18 item 5): the receiver and the sender loop; None without
    # RELIEF_EXCHANGE_PEERS_FILE.
    peer_exchange: PeerExchange | None = field(default=None, init=False)
    _revocation_engine: AsyncEngine | None = field(default=None, init=False)
    # Queries of people as one SQL statement per root field (issue 17; RELIEF_COMPILED_READS).
    compiled: CompiledReads | None = field(default=None, init=False)

    @classmethod
    def create(cls, settings: Settings, *, create_keys: bool = False) -> Runtime:
        """Open keys and database. Keys are created only when asked (``demo``); production
        refuses to start without them (``gateway.runtime.production``)."""
        production.check(settings)
        # Unwrapped with the key-encryption key in the cipher machine when RELIEF_PKCS11_MODULE
        # is set (a wrong PIN, a missing token or KEK stop the start here).
        keyring = open_keyring(settings, create=create_keys)
        if settings.is_production and keyring.audit_primary_id is None:
            # A level-3 deployment keeps keyed audit evidence (issue 16 item 6): a keyring from
            # before audit keys existed gets one by the system administrator's command.
            raise ConfigurationError(
                "生产环境拒绝启动: 密钥环中没有审计密钥, 审计记录将无法加 MAC 防篡改; "
                "请先运行 relief-gateway audit rotate-key 生成审计密钥"
            )
        # The identity platforms (RELIEF_OIDC_*, validated here: a broken file stops start-up).
        issuers = load_issuers(settings)
        tokens = TokenService.from_file(
            settings.token_key_path,
            settings.token_issuer,
            create=create_keys,
            issuers=issuers,
            # Production with a platform: people sign in there, not with the local key.
            accept_local=not (settings.is_production and issuers)
            or settings.oidc_allow_local_tokens,
        )
        engine = make_engine(settings.resolved_database_url)
        sessions = make_sessionmaker(engine)
        replica_url = settings.database_replica_url
        if replica_url and not settings.resolved_database_url.startswith("postgresql"):
            raise ConfigurationError(
                "RELIEF_DATABASE_REPLICA_URL 只能与 PostgreSQL 主库 (RELIEF_DATABASE_URL) 一起使用"
            )
        replica = make_replica_engine(replica_url) if replica_url else None
        runtime = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            vault=PersonVault(FieldCipher(keyring, reload_seconds=settings.keyring_reload_seconds)),
            tokens=tokens,
            authorizer=Authorizer(engine, refresh_seconds=settings.policy_refresh_seconds),
            schema=build_schema(
                production=settings.is_production, limits=QueryLimits.from_settings(settings)
            ),
            purposes=dict(purpose_labels()),
            # Every audit entry MAC'd with the keyring's audit key (issue 16 item 6).
            audit=AuditWriter(sessions, macs=AuditMac(keyring)),
            # Feed mappings are validated at start-up: a broken one stops the gateway here.
            feeds=load_feeds([settings.mappings_dir] if settings.mappings_dir else []),
            # So are the province rules (thresholds, ranking, benefit dates).
            rules=load_rules(settings.province, settings.resolved_rules_file),
            rate_limiter=RateLimiter.from_settings(settings),
            # And the trusted documents: a hash that does not match its text stops it too.
            trusted_documents=TrustedDocuments.load(settings.trusted_documents_dir),
            reads=GraphQLReads(
                ReplicaRouter(
                    engine,
                    replica,
                    max_lag_seconds=settings.database_replica_max_lag_seconds,
                ),
                max_tokens=settings.max_query_tokens,
            ),
        )
        runtime.clients = ClientCredentials.create(
            settings.client_token_key_path,
            settings.client_token_issuer,
            ttl_seconds=settings.client_token_ttl_seconds,
            production=settings.is_production,
            failures_per_minute=settings.client_auth_failures,
        )
        tokens.register(runtime.clients.verifier)  # iss = <RELIEF_TOKEN_ISSUER>/clients
        # The peers file is validated here: a broken one stops the start.
        runtime.peer_exchange = PeerExchange.configure(
            settings,
            own=runtime.rules.code,
            engine=engine,
            vault=runtime.vault,
            macs=runtime.audit.macs,
        )
        if settings.compiled_reads:
            runtime.compiled = CompiledReads(
                runtime.schema._schema,
                runtime.schema.limit_checks,  # type: ignore[attr-defined]
            )
            # Trusted documents first: read once at start, not on their first request.
            runtime.compiled.preload(
                [
                    text
                    for texts in runtime.trusted_documents.by_department.values()
                    for text in texts.values()
                ]
            )
        return runtime

    async def start(self) -> None:
        """Install the default policies on first start and load the policy in force."""
        # The platforms' keys (best effort, asynchronous: an unreachable platform is retried on
        # the first token that needs it).
        await self.tokens.start()
        async with self.sessions() as session:
            await install_default_policies(session)
            await self.authorizer.load(session)
        await self.reads.router.start()  # the replica's first probe (never fails the start)
        # PostgreSQL: an approval in any process reaches this one at once (LISTEN/NOTIFY).
        dsn = listener_dsn(self.settings.resolved_database_url)
        if dsn is not None and self.policy_listener is None:
            self.policy_listener = PolicyListener(dsn, self._policy_announced)
            await self.policy_listener.start()
        if self.settings.delivery_worker and self.delivery is None:
            # Delivers webhooks beside the requests: LISTEN relief_delivery on PostgreSQL (its
            # own connection), a 1 s poll on SQLite (one process: one worker).
            self.delivery = DeliveryWorker(self)
            self.delivery.start()
        if self.events is None:
            # LISTEN relief_outbox on PostgreSQL (its own connection), a 1 s poll on SQLite:
            # started by the first live subscription, so a process nobody subscribes to
            # neither polls nor holds a connection for it.
            self.events = EventHub(self.engine, dsn=dsn)
        if self.peer_exchange is not None:
            await self.peer_exchange.start()  # sends pending messages to the peers, retrying
        if self.clients is not None and self._revocation_engine is None:
            # A disabled client refused within seconds, everywhere. Its poll has a connection
            # of its own: it runs when the requests' pool is exhausted, and is never one of a
            # request's statements.
            self._revocation_engine = make_engine(self.settings.resolved_database_url, pool_size=1)
            await self.clients.start(
                make_sessionmaker(self._revocation_engine),
                refresh_seconds=self.settings.client_revocation_refresh_seconds,
                dsn=dsn,
            )

    async def _policy_announced(self) -> None:
        self.authorizer.invalidate()
        async with self.engine.connect() as connection:
            await self.authorizer.refresh(connection)

    async def close(self) -> None:
        if self.delivery is not None:
            await self.delivery.close()
            self.delivery = None
        if self.clients is not None:
            await self.clients.close()
        if self._revocation_engine is not None:
            await self._revocation_engine.dispose()
            self._revocation_engine = None
        if self.policy_listener is not None:
            await self.policy_listener.close()
            self.policy_listener = None
        if self.peer_exchange is not None:
            await self.peer_exchange.close()
        if self.events is not None:
            await self.events.close()
            self.events = None
        await self.reads.router.close()  # its probe, and the replica's pool
        await self.engine.dispose()
