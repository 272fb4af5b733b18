"""The embedded default dataset: customer-support intents generated from templates and slot values.

Every split is generated deterministically. Validation and test utterances come from templates (and
item names) that training never sees, so they measure generalisation rather than memorised phrasings.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

DATASET_VERSION = "2"
SPLITS = ("train", "validation", "test")
PER_INTENT = {"train": 80, "validation": 20, "test": 24}
OOS_COUNT = {"train": 120, "validation": 60, "test": 100}
OOS_LABEL = "oos"

# Slot values: the first part of every list is used in training, the tail only in validation/test.
_SLOTS: dict[str, tuple[list[str], list[str]]] = {
    "item": (
        [
            "shoes",
            "laptop",
            "jacket",
            "headphones",
            "coffee maker",
            "phone case",
            "backpack",
            "desk lamp",
            "running shorts",
            "blender",
            "watch",
            "sofa cushion",
            "keyboard",
            "winter coat",
        ],
        ["vacuum cleaner", "sunglasses", "printer", "yoga mat", "tablet", "kettle", "hoodie"],
    ),
    "order": (
        ["#48213", "#10457", "number 99812", "#55301", "A-2231", "#77120", "number 31007", "#60094"],
        ["#88456", "B-9013", "number 42871", "#13579"],
    ),
    "device": (
        ["iphone", "android phone", "ipad", "windows laptop", "macbook", "chromebook"],
        ["samsung tablet", "pixel phone", "linux desktop"],
    ),
    "method": (
        ["credit card", "visa card", "paypal", "debit card", "mastercard"],
        ["apple pay", "bank transfer", "amex card"],
    ),
    "plan": (["premium", "pro", "family", "business"], ["plus", "gold", "annual"]),
    "days": (["3", "5", "ten", "two", "7"], ["four", "12", "six"]),
}

# intent -> (training templates, held-out templates). Held-out ones feed validation and test.
INTENTS: dict[str, tuple[list[str], list[str]]] = {
    "track_order": (
        [
            "where is my order {order}",
            "can you tell me where my {item} is",
            "track my order",
            "i want to know the status of order {order}",
            "has my {item} shipped yet",
            "what's the tracking number for my order",
            "when will order {order} arrive",
            "give me an update on my package",
            "is my order on its way",
        ],
        [
            "i'd like to follow the progress of my shipment",
            "any news about the {item} i bought",
            "show me where my parcel currently is",
            "how far along is delivery of {order}",
            "check the shipping status of what i purchased",
        ],
    ),
    "cancel_order": (
        [
            "cancel my order",
            "i want to cancel order {order}",
            "please cancel the {item} i just ordered",
            "how do i cancel a purchase",
            "stop my order {order} from being sent",
            "i changed my mind, cancel the order",
            "can i still cancel my {item} order",
            "don't ship my order, i want to cancel it",
            "cancel purchase {order} immediately",
        ],
        [
            "i no longer want the {item}, please call off the order",
            "undo the order i placed this morning",
            "is it too late to call off order {order}",
            "abort my most recent purchase",
            "i placed an order by mistake and need it voided",
        ],
    ),
    "change_order": (
        [
            "i need to change my order",
            "can i add another {item} to order {order}",
            "modify the size on my order",
            "change the color of the {item} i ordered",
            "i want to update the quantity in my order",
            "swap the {item} in my order for a different model",
            "edit order {order} before it ships",
            "remove one item from my order",
            "can i change what i ordered",
        ],
        [
            "i picked the wrong variant of {item}, can that be corrected",
            "alter the contents of order {order}",
            "is it possible to switch the model in my pending purchase",
            "i'd like to adjust my basket after paying",
            "replace the {item} in my unshipped order with a bigger one",
        ],
    ),
    "request_refund": (
        [
            "i want a refund",
            "can i get my money back for the {item}",
            "refund order {order}",
            "how do i request a refund",
            "i'd like a refund for my purchase",
            "please refund me",
            "give me my money back",
            "i want to be reimbursed for the {item}",
            "start a refund for order {order}",
        ],
        [
            "i'm owed money for the {item}, return it to my {method}",
            "please process reimbursement for {order}",
            "i expect the full amount back for that purchase",
            "credit back what i paid for the {item}",
            "what do i do to recover the money i spent",
        ],
    ),
    "refund_status": (
        [
            "where is my refund",
            "i haven't received my refund yet",
            "when will my refund arrive",
            "status of my refund for order {order}",
            "it's been {days} days and no refund",
            "has my refund been processed",
            "my refund for the {item} is missing",
            "how long do refunds take",
            "check on my refund please",
        ],
        [
            "the money you promised back still isn't in my {method}",
            "what's happening with my reimbursement",
            "you said the credit was issued but i see nothing",
            "still waiting on the money back for {order}",
            "is the reimbursement for the {item} on its way",
        ],
    ),
    "return_item": (
        [
            "i want to return the {item}",
            "how do i return an item",
            "send back order {order}",
            "what is your return policy",
            "can i return the {item} i bought",
            "i need a return label",
            "return my purchase please",
            "how many days do i have to return something",
            "i'd like to send the {item} back",
        ],
        [
            "where should i ship the {item} i don't want anymore",
            "i need to mail back part of order {order}",
            "can unwanted goods be brought back to a store",
            "print me a prepaid shipping slip for sending it back",
            "the {item} doesn't fit, how do i give it back",
        ],
    ),
    "delivery_delay": (
        [
            "my order is late",
            "my package is delayed",
            "the {item} was supposed to arrive {days} days ago",
            "why is my delivery taking so long",
            "order {order} still hasn't arrived",
            "my delivery is overdue",
            "the courier missed the delivery date",
            "it said delivery yesterday but nothing came",
            "my {item} is taking forever",
        ],
        [
            "the expected arrival date passed and i'm still waiting",
            "shipment {order} is way behind schedule",
            "nothing showed up even though tracking promised today",
            "why hasn't the courier brought my {item}",
            "my parcel seems stuck somewhere for a week",
        ],
    ),
    "change_address": (
        [
            "change my shipping address",
            "i moved, update my delivery address",
            "ship order {order} to a different address",
            "can i change where my {item} is delivered",
            "update the address on my order",
            "i entered the wrong address",
            "deliver to my work address instead",
            "fix the street name on my order",
            "send my package to my new home",
        ],
        [
            "the destination on {order} is outdated, please correct it",
            "redirect my parcel to my neighbour's house",
            "my {item} needs to go to another city",
            "i typed my postcode incorrectly at checkout",
            "reroute the delivery to my office",
        ],
    ),
    "shipping_options": (
        [
            "how much is shipping",
            "do you offer express delivery",
            "what shipping options do you have",
            "is there free shipping",
            "do you ship internationally",
            "how fast can you deliver a {item}",
            "can i get next day delivery",
            "what are your delivery costs",
            "do you deliver on weekends",
        ],
        [
            "which couriers do you use and what do they charge",
            "is overnight dispatch available for a {item}",
            "what's the cheapest way to get my goods sent",
            "do you send parcels abroad",
            "how much extra for faster postage",
        ],
    ),
    "reset_password": (
        [
            "i forgot my password",
            "reset my password",
            "how do i change my password",
            "i need a new password",
            "password reset link not working",
            "i can't remember my password",
            "help me recover my password",
            "send me a password reset email",
            "update my password please",
        ],
        [
            "my credentials slipped my mind, how do i set new ones",
            "the reset email never reached my inbox",
            "i'd like to pick a different passphrase for my profile",
            "let me choose a fresh secret for signing in",
            "how do i regain access when i don't know my password",
        ],
    ),
    "create_account": (
        [
            "how do i create an account",
            "sign me up",
            "i want to open an account",
            "how do i register",
            "can i make a new account",
            "create a profile for me",
            "what do i need to sign up",
            "i'd like to join",
            "registration page isn't loading for new users",
        ],
        [
            "i'm a new customer, how do i get started with a profile",
            "set up membership for me",
            "where do i enrol as a first-time shopper",
            "can i open a customer profile using my {device}",
            "what are the steps to become a registered user",
        ],
    ),
    "delete_account": (
        [
            "delete my account",
            "i want to close my account",
            "remove my profile permanently",
            "how do i deactivate my account",
            "erase all my data",
            "cancel my account and delete everything",
            "i don't want an account anymore",
            "please remove my account",
            "close my user account",
        ],
        [
            "wipe my personal information from your systems",
            "i'd like to be forgotten, remove my profile",
            "terminate my membership and all stored details",
            "how can i get rid of my customer profile for good",
            "permanently shut down my login",
        ],
    ),
    "update_account": (
        [
            "change my email address",
            "update my phone number",
            "edit my profile details",
            "i need to change the name on my account",
            "update my contact information",
            "how do i change my username",
            "change the email linked to my account",
            "my phone number is wrong on my profile",
            "update my account details",
        ],
        [
            "my mobile is different now, please correct it in my profile",
            "swap the mail address i use to sign in",
            "i got married and need my surname corrected",
            "personal info on my profile is outdated",
            "where can i edit my contact settings",
        ],
    ),
    "login_problem": (
        [
            "i can't log in",
            "my account is locked",
            "login isn't working",
            "it says invalid credentials",
            "i can't sign in on my {device}",
            "the login page keeps refreshing",
            "two factor code never arrives",
            "i'm locked out of my account",
            "sign in fails every time",
        ],
        [
            "access to my profile is denied even with the right details",
            "the verification text doesn't come through",
            "i get kicked back to the sign-in screen on my {device}",
            "the site won't let me into my account",
            "authentication keeps failing for me",
        ],
    ),
    "payment_failed": (
        [
            "my payment failed",
            "my {method} was declined",
            "i can't complete checkout",
            "payment error at checkout",
            "why was my card rejected",
            "the transaction didn't go through",
            "payment keeps failing",
            "my order won't go through because of payment",
            "checkout says payment declined",
        ],
        [
            "the purchase is refused every time i pay with {method}",
            "i get an error when confirming payment",
            "my bank says fine but your site rejects the charge",
            "buying the {item} fails at the last step",
            "the payment step won't accept my details",
        ],
    ),
    "update_payment": (
        [
            "update my payment method",
            "add a new credit card",
            "change my card details",
            "remove my old card",
            "i want to pay with {method} instead",
            "my card expired, update it",
            "set {method} as my default payment",
            "how do i change my billing card",
            "save a new card to my account",
        ],
        [
            "replace the stored card on my profile",
            "i'd like to switch to {method} for future purchases",
            "delete the saved card that ends in 4421",
            "my bank issued a new card, how do i enter it",
            "where do i manage my saved payment options",
        ],
    ),
    "invoice_request": (
        [
            "i need an invoice",
            "send me a receipt for order {order}",
            "can i get an invoice for my purchase",
            "where can i download my invoice",
            "i need a vat invoice",
            "email me the receipt",
            "i need a copy of my bill",
            "get invoice for the {item}",
            "can you resend my receipt",
        ],
        [
            "my accountant needs proof of purchase for {order}",
            "where do i find billing documents",
            "generate a tax document for what i bought",
            "i'd like a pdf of the bill for the {item}",
            "please provide paperwork for my expense report",
        ],
    ),
    "billing_dispute": (
        [
            "i was charged twice",
            "there is a charge i don't recognize",
            "you overcharged me",
            "why was i billed for order {order} twice",
            "wrong amount charged to my {method}",
            "i was charged after cancelling",
            "dispute a charge",
            "my bill is higher than it should be",
            "unauthorized charge on my card",
        ],
        [
            "my statement shows a duplicate transaction from you",
            "the amount taken from my {method} is incorrect",
            "i never agreed to this payment",
            "you billed me for something i didn't buy",
            "why did my bank show two deductions for the {item}",
        ],
    ),
    "cancel_subscription": (
        [
            "cancel my subscription",
            "stop my membership",
            "i want to end my {plan} plan",
            "how do i unsubscribe",
            "turn off auto renewal",
            "don't renew my subscription",
            "cancel the {plan} membership",
            "i don't want to be billed monthly anymore",
            "end my trial before it charges",
        ],
        [
            "i'd like to stop the recurring payments",
            "please discontinue my {plan} package",
            "how do i opt out of the monthly plan",
            "terminate my recurring membership",
            "stop charging me every month for the service",
        ],
    ),
    "upgrade_subscription": (
        [
            "upgrade my plan",
            "i want the {plan} plan",
            "switch me to {plan}",
            "how do i upgrade my subscription",
            "what does the {plan} plan include",
            "move my account to a higher tier",
            "change my plan",
            "downgrade my subscription",
            "can i switch plans",
        ],
        [
            "what would it cost to go to {plan}",
            "i'd like more features, change my tier",
            "compare the {plan} package with what i have",
            "move me down to a cheaper membership",
            "can i change membership level in the middle of the month",
        ],
    ),
    "app_crash": (
        [
            "the app keeps crashing",
            "your app crashes on my {device}",
            "the app won't open",
            "app freezes when i open it",
            "the mobile app closes by itself",
            "app crashes at checkout",
            "the app is stuck on the loading screen",
            "app stopped working after the update",
            "the app is very slow on my {device}",
        ],
        [
            "every time i launch it on my {device} it shuts down",
            "the application quits unexpectedly",
            "since the latest version the program hangs",
            "the mobile software won't respond to taps",
            "it instantly closes when i tap the icon",
        ],
    ),
    "website_error": (
        [
            "the website is down",
            "i get an error page",
            "your site won't load",
            "page not found error",
            "the checkout page shows an error",
            "the site is broken",
            "error 500 on your website",
            "buttons on the website don't work",
            "the web page keeps timing out",
        ],
        [
            "your homepage shows a blank screen in my browser",
            "something went wrong message on every page",
            "links on your site lead nowhere",
            "the online store is unreachable right now",
            "i see a server error whenever i open my basket",
        ],
    ),
    "damaged_item": (
        [
            "my {item} arrived broken",
            "the item is damaged",
            "i received a defective {item}",
            "the package was crushed",
            "my order arrived damaged",
            "the {item} doesn't work",
            "there's a crack in my {item}",
            "i got a faulty product",
            "the box was open and the item was broken",
        ],
        [
            "the {item} came with a big scratch",
            "what i ordered came in pieces",
            "the device is dead out of the box",
            "my delivery was smashed in transit",
            "parts of order {order} were ruined",
        ],
    ),
    "wrong_item": (
        [
            "i received the wrong item",
            "you sent me the wrong {item}",
            "this isn't what i ordered",
            "wrong size delivered",
            "my order has someone else's items",
            "i got a different color than i ordered",
            "the package contained the wrong product",
            "missing item in my order",
            "order {order} has the wrong things",
        ],
        [
            "the box had a {item} i never asked for",
            "what arrived doesn't match my purchase",
            "half of order {order} is missing",
            "i was shipped an item from another customer",
            "the model delivered differs from the one i picked",
        ],
    ),
    "contact_agent": (
        [
            "i want to talk to a human",
            "connect me to an agent",
            "can i speak to a real person",
            "give me customer service",
            "what's your phone number",
            "transfer me to support",
            "i need to talk to someone",
            "how do i contact you",
            "let me chat with a representative",
        ],
        [
            "put me through to a member of staff",
            "is there anybody i can call",
            "i'd rather discuss this with an employee",
            "how can i reach your support team by phone",
            "get me a live person please",
        ],
    ),
    "discount_code": (
        [
            "my promo code doesn't work",
            "how do i use a discount code",
            "the coupon is invalid",
            "do you have any discounts",
            "apply my voucher",
            "is there a student discount",
            "my discount wasn't applied",
            "where do i enter a promo code",
            "the coupon expired too early",
        ],
        [
            "the voucher i got by email gets rejected",
            "are there any offers for first-time customers",
            "the reduction didn't show up on my total",
            "checkout ignores my gift code",
            "can i still get the sale price on the {item}",
        ],
    ),
}

_OOS: tuple[list[str], list[str]] = (
    [
        "what's the weather like in {city}",
        "tell me a joke",
        "how do i bake banana bread",
        "who won the football game last night",
        "what is the capital of {country}",
        "set an alarm for 7 am",
        "play some jazz music",
        "how many calories are in an apple",
        "translate hello into {language}",
        "what's the meaning of life",
        "recommend a good movie",
        "how tall is mount everest",
        "what time is it in {city}",
        "book a table for two tonight",
        "what's the square root of 144",
        "who wrote war and peace",
        "how do i change a flat tire",
        "remind me to call mom",
        "is it going to rain tomorrow",
        "how do you say thank you in {language}",
        "what's a good name for a dog",
        "how far is the moon",
        "find me a flight to {city}",
        "what are some exercises for back pain",
    ],
    [
        "what's the population of {country}",
        "how long should i boil an egg",
        "sing me a song",
        "what is the speed of light",
        "who is the president of {country}",
        "suggest a book to read this weekend",
        "how do i get to the train station in {city}",
        "what's the best way to learn {language}",
        "how many legs does a spider have",
        "when is the next full moon",
        "give me a fun fact about sharks",
        "what is the exchange rate for euros",
        "how do plants make food",
        "should i buy a cat or a dog",
        "what year did the titanic sink",
        "roll a dice for me",
    ],
)
_OOS_SLOTS = {
    "city": (["paris", "tokyo", "chicago", "berlin", "madrid"], ["sydney", "toronto", "cairo"]),
    "country": (["france", "japan", "brazil", "kenya"], ["canada", "norway", "india"]),
    "language": (["spanish", "german", "italian"], ["japanese", "french", "korean"]),
}

_PREFIXES = [
    "",
    "",
    "",
    "hi, ",
    "hello, ",
    "hey, ",
    "excuse me, ",
    "quick question: ",
    "good morning, ",
    "sorry to bother you, ",
    "um ",
    "urgent: ",
]
_SUFFIXES = [
    "",
    "",
    "",
    "?",
    " please",
    " thanks",
    ", thank you",
    " asap",
    " today",
    ". can you help?",
    " for me",
    "!",
]


def _fill(template: str, slots: dict[str, tuple[list[str], list[str]]], held_out: bool, rng: random.Random) -> str:
    def value(match: re.Match[str]) -> str:
        seen, unseen = slots[match.group(1)]
        pool = unseen + seen[:3] if held_out else seen
        return rng.choice(pool)

    return re.sub(r"\{(\w+)\}", value, template)


def _generate(
    templates: list[str],
    slots: dict[str, tuple[list[str], list[str]]],
    count: int,
    held_out: bool,
    rng: random.Random,
    exclude: set[str],
) -> list[str]:
    out: list[str] = []
    seen = set(exclude)
    for _ in range(count * 200):
        if len(out) == count:
            break
        text = rng.choice(_PREFIXES) + _fill(rng.choice(templates), slots, held_out, rng) + rng.choice(_SUFFIXES)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def generate_default_dataset(seed: int = 13) -> dict[str, list[dict[str, str]]]:
    """All three splits of the default dataset as lists of ``{"text", "label"}`` records.

    Every intent holds out two everyday phrasings and its paraphrase templates (and some slot values): validation
    gets one phrasing and the first half of the paraphrases, test the rest, so no validation or test
    utterance is a filled training template.
    """
    rng = random.Random(seed)
    splits: dict[str, list[dict[str, str]]] = {name: [] for name in SPLITS}
    groups = [(name, train, held, _SLOTS, PER_INTENT) for name, (train, held) in INTENTS.items()]
    groups.append((OOS_LABEL, _OOS[0], _OOS[1], _OOS_SLOTS, OOS_COUNT))
    for label, train, held, slots, counts in groups:
        # the last two "everyday" phrasings are held out too: they share words with training, the
        # paraphrases share almost none, so validation and test mix near and far generalisation
        train, near = train[:-2], train[-2:]
        half = len(held) // 2
        sources = {
            "train": (train, False),
            "validation": ([near[0], *held[:half]], True),
            "test": ([near[1], *held[half:]], True),
        }
        used: set[str] = set()
        for split, (templates, held_out) in sources.items():
            texts = _generate(templates, slots, counts[split], held_out, rng, used)
            used.update(texts)
            splits[split].extend({"text": text, "label": label} for text in texts)
    for records in splits.values():
        rng.shuffle(records)
    return splits


def build_default_dataset(target: Path) -> None:
    """Write ``train.jsonl``, ``validation.jsonl`` and ``test.jsonl`` into ``target``."""
    for split, records in generate_default_dataset().items():
        with open(target / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")


def demo_inputs(data_dir: Path) -> str:
    """A text file of a few test utterances of the built default dataset (the ``--input`` of the demo)."""
    data_dir = Path(data_dir)
    lines = [json.loads(line)["text"] for line in (data_dir / "test.jsonl").read_text("utf-8").splitlines()[:20]]
    path = data_dir / "demo_inputs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def demo_commands(data_dir: Path, count: int = 24) -> list[dict[str, str]]:
    """``{"text", "label"}`` of the first ``count`` test utterances of the built default dataset: the held-out
    commands that the pipeline row of ``trident demo`` speaks and types."""
    lines = (Path(data_dir) / "test.jsonl").read_text("utf-8").splitlines()[:count]
    return [{"text": row["text"], "label": row["label"]} for row in map(json.loads, lines)]
