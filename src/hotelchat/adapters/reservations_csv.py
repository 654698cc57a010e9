"""Reservations from a CSV export of a property-management system: a `ReservationSource`.

The file is UTF-8 (a byte-order mark is fine), at most 5 MB and 10,000 reservations, with a
header row; commas, semicolons or tabs separate the fields (as the header line uses them).
Header names are matched without regard to case, spaces, hyphens or underscores, and columns
not listed here are ignored, so an export can be imported as it comes:

- `code` (required; also reservation, booking, confirmation, reference…): 3 to 40 letters,
  digits or hyphens; a reservation already imported with this code is updated.
- `guest_name` (required; guest, name, full_name): 1 to 200 characters.
- `check_in`, `check_out` (required; arrival, departure): ISO dates such as 2026-07-14, the
  hotel's local dates; check_out after check_in.
- `phone_number` (phone, mobile, telephone, whatsapp): with its country code, written any
  common way (+34 612 34 56 78, 0034 612…); stored as E.164. A WhatsApp guest writing from it
  sees the reservation.
- `email` (e_mail, email_address); `room_type` (room, room_category; at most 100 characters).
- `adults` (default 1), `children` (kids; default 0): 0 to 50.
- `status` (default confirmed): confirmed (booked, reserved), checked_in (in house),
  checked_out (departed), cancelled (canceled, no-show).
- `notes` (comments, remarks): for staff, never shown to the assistant; at most 2000
  characters.

A phone number without a country code is refused unless the source is given the country it
belongs to (`default_region`, e.g. "ES"). Any malformed row raises `InvalidInput` naming its
line, and the whole file is refused: an import stores every reservation of a file or none.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path

import phonenumbers

from hotelchat.domain.errors import InvalidInput, PayloadTooLarge
from hotelchat.services.ports import Reservation
from hotelchat.services.reservations import MAX_IMPORT, StatusName, check_reservation

MAX_FILE_BYTES = 5_000_000
MAX_FIELD_CHARS = 10_000  # longer than any valid field; stops a runaway quoted field early

REQUIRED = ("code", "guest_name", "check_in", "check_out")
ALIASES: dict[str, tuple[str, ...]] = {
    "code": (
        "code", "reservation", "reservationcode", "reservationnumber", "reservationid",
        "booking", "bookingcode", "bookingnumber", "bookingreference", "bookingid",
        "confirmation", "confirmationcode", "confirmationnumber", "reference", "ref",
    ),
    "guest_name": ("guestname", "guest", "name", "fullname"),
    "check_in": ("checkin", "arrival", "arrivaldate", "checkindate"),
    "check_out": ("checkout", "departure", "departuredate", "checkoutdate"),
    "phone_number": ("phonenumber", "phone", "mobile", "mobilephone", "telephone", "whatsapp"),
    "email": ("email", "emailaddress"),
    "room_type": ("roomtype", "room", "roomcategory"),
    "adults": ("adults",),
    "children": ("children", "kids"),
    "status": ("status", "reservationstatus", "bookingstatus"),
    "notes": ("notes", "note", "comments", "remarks"),
}  # fmt: skip
_FIELD_OF = {alias: field for field, aliases in ALIASES.items() for alias in aliases}
STATUS_ALIASES: dict[str, StatusName] = {
    "": "confirmed",
    "confirmed": "confirmed",
    "booked": "confirmed",
    "reserved": "confirmed",
    "checkedin": "checked_in",
    "inhouse": "checked_in",
    "checkedout": "checked_out",
    "departed": "checked_out",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "noshow": "cancelled",
}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SQUASH = re.compile(r"[\s_\-.]+")


def _key(name: str) -> str:
    """A header name or status as compared: lower case, no spaces, hyphens or underscores."""
    return _SQUASH.sub("", name.strip().lower())


class CsvReservationSource:
    """`services.ports.ReservationSource` over a CSV export: a file (`Path`), or its content
    (`bytes`, or already decoded `str`). Nothing is read before `reservations()` is iterated.
    `default_region` (ISO 3166 alpha-2, e.g. "ES") is the country of phone numbers written
    without a country code; without it such numbers are refused."""

    name = "csv"

    def __init__(self, source: Path | bytes | str, *, default_region: str | None = None) -> None:
        if default_region is not None and (
            default_region.upper() not in phonenumbers.SUPPORTED_REGIONS
        ):
            raise InvalidInput(f"unknown country code {default_region!r} (use e.g. ES, PT, US)")
        self._source = source
        self._region = default_region.upper() if default_region else None

    async def reservations(self) -> AsyncIterator[Reservation]:
        """Every reservation of the file, in order. Raises `PayloadTooLarge` for a file over
        5 MB, `InvalidInput` for one that is not UTF-8 CSV with the required columns, has more
        than 10,000 rows, or a malformed row (naming its line)."""
        if isinstance(self._source, Path):
            text = await asyncio.to_thread(self._text)  # a file read stays off the event loop
        else:
            text = self._text()
        for reservation in self.parse(text):
            yield reservation

    def _text(self) -> str:
        source = self._source
        if isinstance(source, str):
            if len(source) > MAX_FILE_BYTES or len(source.encode()) > MAX_FILE_BYTES:
                raise PayloadTooLarge(_too_large())
            return source
        if isinstance(source, Path):
            try:
                with source.open("rb") as file:
                    content = file.read(MAX_FILE_BYTES + 1)
            except OSError as exc:
                raise InvalidInput(f"cannot read {source.name}: {exc.strerror}") from None
        else:
            content = source
        if len(content) > MAX_FILE_BYTES:
            raise PayloadTooLarge(_too_large())
        try:
            return content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = content[: exc.start].count(b"\n") + 1
            raise InvalidInput(
                f"line {line}: the file is not UTF-8 text (export it as CSV UTF-8)"
            ) from None

    def parse(self, text: str) -> Iterator[Reservation]:
        """The reservations of CSV `text`; see the module's docstring for the columns."""
        text = text.lstrip("\ufeff")
        first_line = text.split("\n", 1)[0]
        delimiter = max((",", ";", "\t"), key=first_line.count)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        try:
            header = next(reader, None)
            if header is None or not any(cell.strip() for cell in header):
                raise InvalidInput("the file is empty: it needs a header row and reservations")
            columns = self._columns(header)
            seen: dict[str, int] = {}
            count = 0
            end = reader.line_num
            for cells in reader:
                line, end = end + 1, reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                count += 1
                if count > MAX_IMPORT:
                    raise InvalidInput(
                        f"line {line}: at most {MAX_IMPORT} reservations per file; split it"
                    )
                try:
                    reservation = self._row(cells, columns, len(header))
                except InvalidInput as exc:
                    raise InvalidInput(f"line {line}: {exc.message}") from None
                if reservation.code in seen:
                    raise InvalidInput(
                        f"line {line}: code {reservation.code!r} is also on line "
                        f"{seen[reservation.code]}"
                    )
                seen[reservation.code] = line
                yield reservation
        except csv.Error as exc:
            raise InvalidInput(f"line {reader.line_num}: malformed CSV ({exc})") from None
        if count == 0:
            raise InvalidInput("the file has a header but no reservations")

    @staticmethod
    def _columns(header: list[str]) -> dict[str, int]:
        """Field name -> column index. Raises `InvalidInput` for a missing or doubled one."""
        columns: dict[str, int] = {}
        for index, name in enumerate(header):
            field = _FIELD_OF.get(_key(name))
            if field is None:
                continue
            if field in columns:
                raise InvalidInput(
                    f"line 1: columns {header[columns[field]].strip()!r} and {name.strip()!r} "
                    f"both give {field}"
                )
            columns[field] = index
        missing = [field for field in REQUIRED if field not in columns]
        if missing:
            raise InvalidInput(
                "line 1: the header needs columns " + ", ".join(REQUIRED)
                + "; missing: " + ", ".join(missing)
            )  # fmt: skip
        return columns

    def _row(self, cells: list[str], columns: dict[str, int], width: int) -> Reservation:
        if len(cells) > width:
            raise InvalidInput(f"{len(cells)} fields where the header has {width}")
        if any(len(cell) > MAX_FIELD_CHARS for cell in cells):
            raise InvalidInput(f"a field is longer than {MAX_FIELD_CHARS} characters")

        def get(field: str) -> str:
            index = columns.get(field)
            return cells[index].strip() if index is not None and index < len(cells) else ""

        for field in REQUIRED:
            if not get(field):
                raise InvalidInput(f"{field} is empty")
        status = STATUS_ALIASES.get(_key(get("status")))
        if status is None:
            raise InvalidInput(
                f"status {get('status')[:40]!r} is not confirmed, checked_in, checked_out "
                "or cancelled"
            )
        reservation = Reservation(
            code=get("code"),
            guest_name=" ".join(get("guest_name").split()),
            check_in=_date(get("check_in"), "check_in"),
            check_out=_date(get("check_out"), "check_out"),
            status=status,
            room_type=get("room_type") or None,
            adults=_count(get("adults"), "adults", default=1),
            children=_count(get("children"), "children", default=0),
            phone_number=self._phone(get("phone_number")),
            email=get("email") or None,
            notes=get("notes") or None,
        )
        return check_reservation(reservation)

    def _phone(self, value: str) -> str | None:
        """`value` as E.164, or None when empty. Raises `InvalidInput`."""
        if not value:
            return None
        if self._region is None and value.startswith("00"):
            value = "+" + value[2:]  # the international prefix of most of the world
        try:
            number = phonenumbers.parse(value, self._region)
        except phonenumbers.NumberParseException:
            number = None
        if number is None or not phonenumbers.is_possible_number(number):
            raise InvalidInput(
                "phone_number is not a phone number with its country code (+34 612 34 56 78)"
            )
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _date(value: str, field: str) -> date:
    if _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInput(f"{field} {value[:20]!r} is not a date written YYYY-MM-DD")


def _count(value: str, field: str, *, default: int) -> int:
    if not value:
        return default
    if not value.isascii() or not value.isdigit() or int(value) > 50:
        raise InvalidInput(f"{field} must be a whole number from 0 to 50")
    return int(value)


def _too_large() -> str:
    return f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB; split it"
