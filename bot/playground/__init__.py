"""The local playground: a Telegram Bot API stand-in plus a web chat (see `standin`)."""

from bot.playground.models import ApiCall, BotMessage, CallbackAnswer, FakeUser
from bot.playground.standin import BotApiStandIn, StandInClient, StandInThread

__all__ = [
    "ApiCall",
    "BotApiStandIn",
    "BotMessage",
    "CallbackAnswer",
    "FakeUser",
    "StandInClient",
    "StandInThread",
]
