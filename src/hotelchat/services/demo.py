"""The demo chain `hotelchat dev` seeds: two hotels with a knowledge base, a WhatsApp number and an
agent login each. Seeding is idempotent: a second run changes nothing but the agents' passwords,
which it sets to the ones given (so `hotelchat dev` can print working logins on every start).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from hotelchat.domain.errors import Conflict

CHAIN_SLUG = "sunrise"
CHAIN_NAME = "Sunrise Hotels"


@dataclass(frozen=True)
class DemoHotel:
    slug: str
    name: str
    description: str
    timezone: str
    whatsapp_number: str
    agent_email: str
    knowledge: tuple[tuple[str, str], ...]


_COMMON = (
    (
        "Wi-Fi",
        "Free Wi-Fi covers the whole hotel. Network: {wifi}. The password is on the card "
        "in your room and at reception.",
    ),
    (
        "Pets",
        "Dogs and cats up to 15 kg are welcome for EUR 20 per night. Please tell us before "
        "arrival; pets are not allowed in the restaurant or the spa.",
    ),
    (
        "Luggage storage",
        "We keep your luggage free of charge before check-in and after check-out; "
        "ask at reception.",
    ),
    (
        "Smoking",
        "All rooms and indoor areas are non-smoking. Smoking is allowed on the terrace "
        "next to the garden.",
    ),
)

HOTELS = (
    DemoHotel(
        slug="amapola-resort",
        name="Amapola Resort",
        description="A 120-room beach resort in Marbella, Spain, with a spa, two pools and a "
        "restaurant. Reception is open 24 hours; phone +34 952 000 000.",
        timezone="Europe/Madrid",
        whatsapp_number="+15550100001",
        agent_email="agent@amapola.example",
        knowledge=(
            (
                "Breakfast",
                "Breakfast is served from 7:00 to 10:30 in the Olivo restaurant on the ground "
                "floor. It is a buffet with hot dishes, fresh fruit and gluten-free options.",
            ),
            (
                "Check-in and check-out",
                "Check-in is from 15:00 and check-out is until 12:00. Late "
                "check-out until 15:00 costs EUR 30, subject to availability.",
            ),
            (
                "Parking",
                "Underground parking is available for EUR 18 per day. It has 4 electric "
                "vehicle chargers; the entrance is on Calle del Mar.",
            ),
            (
                "Spa",
                "The spa is open daily from 9:00 to 21:00, with a sauna, steam bath and an "
                "indoor pool. Massages are booked at reception. Guests under 16 are not admitted.",
            ),
            (
                "Airport transfer",
                "We arrange transfers from Malaga airport for EUR 65 per car (up "
                "to 4 people). Book at least 24 hours ahead with your flight number.",
            ),
            (
                "Pools",
                "The outdoor pool is open from 9:00 to 20:00 from May to October; towels "
                "are at the pool bar. The heated indoor pool in the spa is open all year.",
            ),
            ("Gym", "The gym on the first floor is open 24 hours with your room key."),
            (
                "Restaurant",
                "The Olivo restaurant serves dinner from 19:30 to 23:00. Reservations "
                "are recommended at weekends.",
            ),
            *((title, body.format(wifi="Amapola-Guest")) for title, body in _COMMON),
        ),
    ),
    DemoHotel(
        slug="harbour-view",
        name="Harbour View Hotel",
        description="A 60-room city hotel by the harbour in Lisbon, Portugal, ten minutes' walk "
        "from the old town. Reception is open 24 hours.",
        timezone="Europe/Lisbon",
        whatsapp_number="+15550100002",
        agent_email="agent@harbourview.example",
        knowledge=(
            (
                "Breakfast",
                "Breakfast is served from 7:30 to 11:00 on the rooftop terrace, with "
                "Portuguese pastries, eggs to order and vegan options.",
            ),
            (
                "Check-in and check-out",
                "Check-in is from 14:00 and check-out is until 11:00. "
                "Early check-in from 10:00 costs EUR 25 when a room is ready.",
            ),
            (
                "Parking",
                "The hotel has no car park. The public Garage Ribeira, 200 m away, costs "
                "EUR 22 per day; reception gives a 10% discount voucher.",
            ),
            ("Spa", "We have no spa, but guests get 20% off at the Alma Spa two streets away."),
            (
                "Airport transfer",
                "A private transfer from Lisbon airport costs EUR 35; the metro "
                "red and green lines take 30 minutes for EUR 1.85.",
            ),
            ("Bicycles", "City bikes can be rented at reception for EUR 12 per day."),
            *((title, body.format(wifi="HarbourView")) for title, body in _COMMON),
        ),
    ),
)


class DemoProvisioning(Protocol):
    async def ensure_chain(self, slug: str, name: str) -> int: ...

    async def create_hotel(
        self, *, chain_slug: str, slug: str, name: str, description: str = ..., timezone: str = ...
    ) -> int: ...

    async def add_whatsapp_sender(
        self, *, hotel_slug: str, phone_number: str, account_sid: str, auth_token: str
    ) -> int: ...

    async def add_agent(
        self,
        *,
        chain_slug: str,
        email: str,
        display_name: str,
        password: str,
        hotel_slugs: list[str],
        role: str = ...,
    ) -> int: ...

    async def add_knowledge(self, *, hotel_slug: str, title: str, body: str) -> int: ...


@dataclass(frozen=True)
class AgentLogin:
    hotel_slug: str
    email: str
    password: str


def new_password() -> str:
    """A random 16-character password for a demo agent."""
    return secrets.token_urlsafe(12)


async def seed_demo(prov: DemoProvisioning, passwords: dict[str, str]) -> list[AgentLogin]:
    """Create the demo chain if missing and set the demo agents' passwords to `passwords`
    (email -> password; missing ones are generated). Returns the logins."""
    await prov.ensure_chain(CHAIN_SLUG, CHAIN_NAME)
    logins = []
    for hotel in HOTELS:
        try:
            await prov.create_hotel(
                chain_slug=CHAIN_SLUG,
                slug=hotel.slug,
                name=hotel.name,
                description=hotel.description,
                timezone=hotel.timezone,
            )
        except Conflict:
            pass  # seeded before; leave whatever the demo user changed
        else:
            await prov.add_whatsapp_sender(
                hotel_slug=hotel.slug,
                phone_number=hotel.whatsapp_number,
                account_sid="AC" + secrets.token_hex(16),
                auth_token=secrets.token_hex(16),
            )
            for title, body in hotel.knowledge:
                await prov.add_knowledge(hotel_slug=hotel.slug, title=title, body=body)
        password = passwords.get(hotel.agent_email) or new_password()
        await prov.add_agent(
            chain_slug=CHAIN_SLUG,
            email=hotel.agent_email,
            display_name=f"{hotel.name} front desk",
            password=password,
            hotel_slugs=[hotel.slug],
        )
        logins.append(AgentLogin(hotel.slug, hotel.agent_email, password))
    return logins
