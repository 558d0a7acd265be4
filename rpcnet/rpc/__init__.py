"""The RPC engine: transport-agnostic server and client."""

from .client import BidiCall, CallMetadata, ClientStreamingCall, ResponseStream, RpcClient
from .context import CallInfo, ServerContext, current_context, current_deadline
from .methods import MethodKind
from .server import RpcServer
from .services import Service, ServiceError, rpcmethod

__all__ = [
    "RpcServer",
    "RpcClient",
    "ServerContext",
    "CallInfo",
    "CallMetadata",
    "ResponseStream",
    "ClientStreamingCall",
    "BidiCall",
    "MethodKind",
    "current_deadline",
    "current_context",
    "Service",
    "ServiceError",
    "rpcmethod",
]
