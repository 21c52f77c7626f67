"""Everyday requests built from templates written for this project: how-to, code, arithmetic, emails,
summaries, translations and explanations, the kinds a chat model is asked most.

They give the head target answers outside the study's domain without reading the study's everyday
prompt set (``specdec/study/data/everyday.jsonl``): none of its requests or topics is reused here,
so that set stays an out-of-domain test. Arithmetic draws fresh numbers each time; summaries get a
paragraph the target first writes itself (:data:`PARAGRAPH_REQUEST`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

REQUEST_KINDS = ("how-to", "code", "arithmetic", "email", "summary", "translation", "explanation")
PARAGRAPH_REQUEST = "Write one paragraph of five or six sentences about {topic}. Write only the paragraph."
PARAGRAPH_TOKENS = 160  # the longest paragraph the target may write for a summary request

HOWTO_TASKS = (
    "fix a leaking kitchen tap", "start running if I have never exercised", "keep houseplants alive in winter",
    "make a monthly budget", "back up the photos on my phone", "clean a cast iron pan",
    "write a good CV for my first job", "sleep better before an exam", "plan a weekend trip on a small budget",
    "make fresh pasta by hand", "speak more confidently in meetings", "paint a room without making a mess",
    "change a flat bicycle tyre", "organise a small wardrobe", "learn to play the guitar as an adult",
    "grow tomatoes on a balcony", "make my laptop battery last longer", "prepare for a half marathon",
    "bake bread without a bread machine", "reduce the noise from my neighbours", "negotiate a higher salary",
    "stop procrastinating on a big project", "teach a puppy to sit", "set up a home Wi-Fi network",
    "make cold brew coffee", "pack a suitcase for a two-week trip", "write a speech for a friend's wedding",
    "remove rust from garden tools", "keep a reading habit", "save money on groceries",
    "choose a good pair of running shoes", "make a simple website for my shop", "care for a sourdough starter",
    "study a new language every day in twenty minutes", "prepare a room for a newborn baby",
    "take better photos with my phone", "unclog a bathroom sink", "host a dinner for eight people",
)
HOWTO_FORMATS = ("", " Walk me through it step by step.", " Keep it short.", " List the main steps.",
                 " What mistakes should I avoid?", " Explain it for a beginner.")
CODE_TASKS = (
    "returns the largest of three numbers", "counts the vowels in a string", "reverses the words in a sentence",
    "removes duplicates from a list while keeping the order", "computes the factorial of n",
    "tells whether a number is prime", "returns the n-th Fibonacci number", "merges two sorted lists",
    "finds the most common word in a text", "converts Celsius to Fahrenheit", "flattens a nested list",
    "returns the second largest number in a list", "tells whether two words are anagrams",
    "sums the digits of an integer", "capitalises the first letter of each word", "computes the average of a list",
    "splits a list into chunks of size k", "counts how many times each character appears",
    "validates a simple email address", "reads a CSV file and prints the number of rows",
    "finds the longest word in a sentence", "returns the greatest common divisor of two numbers",
    "converts a number to binary", "rotates a list by k positions", "tells whether a year is a leap year",
)
CODE_LANGS = ("Python", "Python", "JavaScript", "Java", "C", "Go")
CODE_CONCEPTS = (
    ("a dictionary", "a list", "Python"), ("a tuple", "a list", "Python"), ("==", "is", "Python"),
    ("a class", "an object", "Java"), ("a promise", "a callback", "JavaScript"), ("a pointer", "a reference", "C++"),
    ("a stack", "a queue", "computer science"), ("recursion", "iteration", "programming"),
    ("an interface", "an abstract class", "Java"), ("INNER JOIN", "LEFT JOIN", "SQL"),
    ("a process", "a thread", "operating systems"), ("git merge", "git rebase", "git"),
    ("a compiler", "an interpreter", "programming"), ("map", "filter", "JavaScript"),
    ("a set", "a list", "Python"), ("GET", "POST", "HTTP"),
)
SQL_TASKS = (
    "lists all employees who earn more than 50,000, given a table employees(name, salary)",
    "counts the orders placed in 2023, given a table orders(id, created_at)",
    "finds the average price per category, given a table products(name, category, price)",
    "shows the students without a grade, given a table grades(student_id, grade)",
    "deletes the rows older than 30 days from a table logs(id, created_at)",
)
ITEMS = ("notebooks", "apples", "concert tickets", "pens", "bus passes", "coffees", "plant pots", "T-shirts")
NAMES = ("Ana", "Ben", "Chen", "Dina", "Omar", "Priya", "Sam", "Yuki", "Lena", "Tom")
EMAIL_RECIPIENTS = ("my manager", "a customer", "my professor", "a hotel", "my neighbour", "a supplier",
                    "the school", "a job recruiter", "my bank", "the organisers of a conference", "my dentist")
EMAIL_PURPOSES = (
    "asking for a day off next Thursday", "apologising for a late delivery", "asking for an extension on an essay",
    "asking whether a room with a sea view is available", "inviting them to a street party on Saturday",
    "asking why an invoice was paid twice", "asking to move my appointment to next week",
    "following up after an interview last Tuesday", "reporting a lost card", "asking about the schedule",
    "thanking them for their help with a project", "declining an offer politely", "asking for a refund",
    "introducing myself as the new project lead",
)
EMAIL_TONES = ("short", "polite", "formal", "friendly", "brief and clear")
PARAGRAPH_TOPICS = (
    "honey bees", "the history of the printing press", "volcanoes", "working from home", "the Moon landing",
    "recycling plastic", "the invention of the telephone", "electric cars", "coral reefs", "the Olympic Games",
    "learning to swim", "coffee farming", "public libraries", "the water cycle", "desert animals",
    "the first computers", "sleep and memory", "city parks", "the Silk Road", "solar panels",
)
SUMMARY_ASKS = ("Summarize this text in two sentences:", "What is the main idea of this paragraph?",
                "Summarize the following text in one sentence:", "Give me three bullet points that sum up this text:")
LANGUAGES = ("French", "Spanish", "German", "Italian", "Portuguese", "Dutch")
SUBJECTS = ("My brother", "The teacher", "Our neighbours", "The little girl", "My friends and I", "The doctor",
            "The new shop", "The train", "My grandmother", "The children")
ACTIONS = ("will arrive", "usually has lunch", "wants to buy a new bicycle", "is reading a book", "went to the market",
           "closes early", "is looking for the station", "cooked dinner for everyone", "forgot the keys",
           "is learning to drive")
TIMES = ("tomorrow morning", "on Sundays", "next week", "after work", "at half past six", "in the summer",
         "yesterday evening", "every day")
CONCEPTS = (
    "photosynthesis", "inflation", "how vaccines work", "gravity", "what a black hole is", "how a rainbow forms",
    "what DNA is", "how the internet sends data", "what a credit score is", "why we have seasons",
    "how an electric motor works", "what machine learning is", "supply and demand", "how tides work",
    "what a calorie is", "how airplanes stay in the air", "what an atom is", "how a bill becomes a law",
    "why leaves change colour in autumn", "what a password manager does", "how earthquakes happen",
    "what the stock market is", "how a solar panel makes electricity", "why bread rises",
)
AUDIENCES = ("", " in simple terms.", " to a ten-year-old.", " in three sentences.", " with an everyday example.",
             " for a beginner.")


@dataclass
class Request:
    """One everyday request; for a summary, ``text`` holds ``{paragraph}`` until the target writes it."""

    text: str
    kind: str  # one of REQUEST_KINDS
    topic: str = ""  # the paragraph's topic (summaries only)


def _arithmetic(r: random.Random) -> str:
    a, b, n, p = r.randint(12, 99), r.randint(3, 40), r.randint(3, 12), r.choice((5, 10, 15, 20, 25, 30))
    item, name = r.choice(ITEMS), r.choice(NAMES)
    forms = (
        f"{name} buys {n} {item} at {b} dollars each and pays with a {r.choice((500, 1000))} dollar note. "
        f"How much change does {name} get?",
        f"What is {a} multiplied by {b}? Show your working.",
        f"What is {p}% of {a * 10}? Explain the steps.",
        f"A car travels {a * 3} km in {r.choice((2, 3, 4))} hours. What is its average speed?",
        f"Convert {a * 7} minutes into hours and minutes.",
        f"A bill of {a * 4} dollars is shared equally by {n} friends. How much does each pay?",
        f"A bus leaves at {r.randint(6, 11)}:{r.choice(('05', '15', '20', '45'))} and the ride takes "
        f"{r.randint(1, 3)} h {r.randint(5, 55)} min. When does it arrive?",
        f"The price of a jacket drops from {a + 60} to {a + 40} dollars. By what percentage did it drop?",
        f"A square garden has sides of {n} metres. What are its area and perimeter?",
        f"{name} reads {b} pages a day. How many days does a {a * 10}-page book take?",
        f"Solve for x: {n}x + {b} = {n * a + b}. Explain each step.",
    )
    return r.choice(forms)


def _code(r: random.Random) -> str:
    pick = r.random()
    if pick < 0.55:
        tail = r.choice(("", " Explain how it works.", " Add a short example.", " Keep it simple."))
        return f"Write a {r.choice(CODE_LANGS)} function that {r.choice(CODE_TASKS)}.{tail}"
    if pick < 0.8:
        a, b, where = r.choice(CODE_CONCEPTS)
        return f"What is the difference between {a} and {b} in {where}? Give an example."
    return f"Write a SQL query that {r.choice(SQL_TASKS)}."


def make_request(r: random.Random) -> Request:
    """One request of a kind drawn uniformly from :data:`REQUEST_KINDS`."""
    kind = r.choice(REQUEST_KINDS)
    if kind == "how-to":
        text = f"How do I {r.choice(HOWTO_TASKS)}?{r.choice(HOWTO_FORMATS)}"
    elif kind == "code":
        text = _code(r)
    elif kind == "arithmetic":
        text = _arithmetic(r)
    elif kind == "email":
        text = f"Write a {r.choice(EMAIL_TONES)} email to {r.choice(EMAIL_RECIPIENTS)} {r.choice(EMAIL_PURPOSES)}."
    elif kind == "summary":
        return Request(f"{r.choice(SUMMARY_ASKS)}\n\n{{paragraph}}", kind, r.choice(PARAGRAPH_TOPICS))
    elif kind == "translation":
        sentence = f"{r.choice(SUBJECTS)} {r.choice(ACTIONS)} {r.choice(TIMES)}."
        text = f"Translate into {r.choice(LANGUAGES)}: \"{sentence}\""
    else:
        text = f"Explain {r.choice(CONCEPTS)}{r.choice(AUDIENCES) or '.'}"
    return Request(text, kind)
