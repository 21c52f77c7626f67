"""Everyday requests built from templates written for this project: how-to, code, arithmetic, emails,
summaries, translations and explanations, the kinds a chat model is asked most.

They give the head target answers outside the study's domain without reading the study's everyday
prompt set (``specdec/study/data/everyday.jsonl``): none of its requests or topics is reused here,
so that set stays an out-of-domain test. Arithmetic draws fresh numbers each time; summaries get a
paragraph the target first writes itself (:data:`PARAGRAPH_REQUEST`).

Three template sets: set 1 (``request_00000``-``00106`` of the bundled head's data) asks each kind in
one or two phrasings; set 2 keeps set 1's draws for half the requests and otherwise asks in the many
other ways people phrase the same kinds (questions, plans, recipes, notes to a group, code to read);
set 3 keeps sets 1 and 2 for a quarter each and asks the rest in a third way (bugs to fix, replies and
rewrites, titles for a paragraph, idioms and myths, requests at a counter). A shard's set is in its
metadata, so the committed shards regenerate from their commands.
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

# Set 2: other phrasings and contents (none taken from the study's everyday prompt set).
HOWTO_ASKS = ("What is a good way to {t}?", "Can you give me some tips to {t}?", "I want to {t}. Where do I start?",
              "Give me a simple plan to {t}.", "What do I need to {t}?", "How can I {t} quickly?",
              "Give me a {w}-week plan to {t}.", "Is it hard to {t}? How would you go about it?")
HOWTO_TASKS_2 = (
    "learn to cook for myself", "get rid of fruit flies in the kitchen", "write a thank-you card",
    "make my small flat feel bigger", "improve my handwriting", "keep my car clean inside",
    "learn the basics of chess", "remember people's names", "start journaling", "make a podcast at home",
    "train for my first 5 km run", "descale a kettle", "plan meals for a busy week", "sharpen a kitchen knife",
    "make friends in a new city", "get better at public speaking", "wash a wool jumper", "iron a shirt",
    "start a small vegetable garden", "learn to draw faces", "fall asleep faster", "write a short story",
)
DISHES = ("banana bread", "a tomato pasta sauce", "pancakes", "a chickpea curry", "a green salad with a lemon dressing",
          "oat cookies", "egg fried rice", "guacamole", "a lentil stew", "a quick omelette", "roast potatoes",
          "a fruit smoothie", "a mushroom risotto", "flatbread without yeast", "a simple tomato soup")
RECIPE_ASKS = ("Give me an easy recipe for {d}.", "How do I make {d}? List the ingredients first.",
               "What do I need to make {d} for four people?", "Give me a quick recipe for {d} that takes {m} minutes.")
CODE_TASKS_2 = (
    "tells whether a list is sorted", "returns the index of the smallest element", "counts the words in a file",
    "turns a list of pairs into a dictionary", "removes the punctuation from a string", "returns the median of a list",
    "tells whether a number is a perfect square", "returns the last n lines of a text",
    "converts a string of digits to an integer without int()", "groups words by their first letter",
    "tells whether the brackets in a string are balanced", "returns all even numbers below n",
    "computes the distance between two points", "shuffles a list without using random.shuffle",
)
CODE_TOPICS = (("a dictionary comprehension", "Python"), ("a decorator", "Python"), ("a generator", "Python"),
               ("an arrow function", "JavaScript"), ("a lambda", "Python"), ("a closure", "JavaScript"),
               ("a for-each loop", "Java"), ("a struct", "C"), ("an f-string", "Python"), ("async and await", "JavaScript"),
               ("a try/except block", "Python"), ("a primary key", "SQL"), ("a hash map", "computer science"),
               ("big-O notation", "computer science"), ("a unit test", "software"))
VAR_NAMES = ("total", "count", "result", "values", "items", "scores", "numbers", "words")
EMAIL_GROUPS = ("my team", "the parents in my daughter's class", "our running club", "the other tenants",
                "my classmates", "the volunteers", "our book club", "the new interns")
EMAIL_NEWS = ("the office closes early on Friday", "the project deadline moves to the end of the month",
              "Tuesday's training session is cancelled", "a new colleague joins us next week",
              "the shared kitchen will be cleaned on Wednesday", "the summer party is on the 14th",
              "the car park is closed for repairs on Monday", "we reached our fundraising goal")
EMAIL_CALLS = ("reply by Thursday", "confirm that they can come", "send me their questions",
               "update their calendars", "bring a dish to share", "sign up by the end of the week")
THANKS_FOR = ("covered my shift at short notice", "lent me their notes before the exam",
              "showed me around on my first day", "fixed my bike", "looked after my cat during the holidays",
              "gave me useful feedback on my presentation", "organised my farewell lunch")
THANKS_WHO = ("a colleague", "a neighbour", "my teacher", "a friend", "my mentor", "my coach")
SUMMARY_ASKS_2 = ("What is this paragraph mostly about? Answer in one sentence.\n\n{paragraph}",
                  "Shorten this text to about thirty words:\n\n{paragraph}",
                  "Write a one-line summary of this text.\n\n{paragraph}",
                  "List the key facts in this paragraph:\n\n{paragraph}",
                  "Read this and tell me the main point:\n\n{paragraph}",
                  "{paragraph}\n\nSummarize the text above for a busy reader.")
PARAGRAPH_TOPICS_2 = ("wind turbines", "the history of chocolate", "penguins", "online shopping", "the Great Wall of China",
                      "composting", "the first aeroplanes", "bicycle lanes in cities", "rainforests", "marathons",
                      "tea ceremonies", "museum audio guides", "the invention of paper", "night trains", "glaciers")
PLACES = ("the library", "the post office", "the bakery", "the swimming pool", "the bank", "the bus stop",
          "the town hall", "the market", "the hospital", "the cinema")
THINGS = ("this jacket", "a ticket to the city centre", "the room for one night", "a coffee and a croissant",
          "the blue umbrella", "a return ticket")
TRANSLATE_ASKS = ('Translate into {L}: "{s}"', 'Translate this sentence into {L}: "{s}"',
                  'How do you say "{s}" in {L}?', 'What is "{s}" in {L}?',
                  "Please translate the following into {L}:\n\n{s}", "Translate from English to {L}: {s}")
NOUNS = ("a mortgage", "a carbon footprint", "an algorithm", "a recession", "a food chain", "a placebo",
         "an ecosystem", "a cloud server", "a budget deficit", "a metaphor", "renewable energy", "a pension",
         "an allergy", "a patent", "a firewall", "a gene")
PHENOMENA = ("ice floats on water", "the sea is salty", "we get hiccups", "cats purr", "onions make us cry",
             "the Moon has phases", "metal feels colder than wood", "we yawn", "bubbles are round",
             "planes leave white trails in the sky", "popcorn pops")
DEVICES = ("a microwave oven", "a thermostat", "GPS", "a touch screen", "a vaccine trial", "a dishwasher",
           "a hybrid car", "noise-cancelling headphones", "a smoke detector", "a credit card payment")
PAIRS = (("weather", "climate"), ("a crocodile", "an alligator"), ("a debit card", "a credit card"),
         ("a lake", "a sea"), ("a hurricane", "a tornado"), ("an epidemic", "a pandemic"), ("speed", "velocity"),
         ("mass", "weight"), ("a simile", "a metaphor"), ("a comet", "an asteroid"), ("baking soda", "baking powder"))
EXPLAIN_TAILS = ("", " Keep it simple.", " Use an everyday example.", " Avoid jargon.", " Answer in a few sentences.",
                 " Explain it to a child.")


# Set 3: a third way to ask each kind, with contents of its own (none from the study's everyday prompt set).
HOWTO_ASKS_3 = ("I keep failing to {t}. What am I doing wrong?", "Explain, step by step, how to {t}.",
                "A friend asked me how to {t}. What should I tell them?", "What are the first three things to do to {t}?",
                "Could you write me a checklist to {t}?", "I have one free afternoon. How can I {t}?",
                "What tools do I need to {t}, and how do I use them?")
HOWTO_TASKS_3 = (
    "patch a small hole in a plaster wall", "fix a squeaky door hinge", "get chewing gum off my trousers",
    "set up a freshwater aquarium", "learn to juggle three balls", "write a cover letter for an internship",
    "organise my email inbox", "choose a laptop for university", "defrost a freezer", "keep cut flowers fresh",
    "get my bike ready for winter", "plan a surprise party", "settle a rescue dog into a new home", "start meditating",
    "keep ants out of my kitchen", "knit a simple scarf", "move house with less stress", "build a small bookshelf",
    "clean an oven without harsh chemicals", "get a toddler to eat vegetables", "make granola at home",
    "teach my parents to make video calls",
)
BUGGY = (
    ("This function should tell whether n is even, but it gives the wrong answer. Fix it.",
     "def is_even(n):\n    return n % 2 == 1\n\nprint(is_even({n}))"),
    ("This loop should add up the numbers from 1 to {n}, but the total is too small. Why?",
     "total = 0\nfor i in range(1, {n}):\n    total += i\nprint(total)"),
    ("This code crashes with an IndexError. Explain why and fix it.",
     "names = ['{a}', '{b}']\nfor i in range(len(names) + 1):\n    print(names[i])"),
    ("This function should return the largest value, but it returns the wrong one for negative numbers. Fix it.",
     "def largest(values):\n    best = 0\n    for v in values:\n        if v > best:\n            best = v\n    return best"),
)
CLASSES = (("a bank account", "deposit and withdraw money"), ("a to-do list", "add, remove and list tasks"),
           ("a rectangle", "compute its area and perimeter"), ("a library book", "borrow and return it"),
           ("a shopping cart", "add items and compute the total"), ("a stopwatch", "start, stop and reset it"))
REGEX = ("a date written as YYYY-MM-DD", "a hexadecimal colour such as #a1b2c3", "a time in 24-hour format",
         "a word that starts with a capital letter", "a phone number of exactly ten digits")
SHELL = ("counts the lines in every .txt file in a folder", "finds the ten largest files in my home directory",
         "renames every .jpeg file in a folder to .jpg", "shows which process is using port 8080",
         "prints the last 20 lines of a log file and keeps following it")
BLUNT = ("Send me the report now.", "Your delivery was late again. Fix it.", "I can't come tomorrow.",
         "Why haven't you answered my email?", "The meeting is cancelled.", "Stop parking in front of my garage.")
INCOMING = ("Hi, can we move our call to Thursday afternoon?",
            "Thanks for your order. Could you confirm your delivery address?",
            "Would you like to join our club's picnic on Sunday?", "Your subscription ends next week. Do you want to renew?",
            "We would like to invite you for a second interview next Wednesday.")
COMPLAINTS = ("a parcel that arrived damaged", "a noisy hotel room", "a train ticket charged twice",
              "a gym that keeps cancelling my class", "a phone repair that took three weeks", "a cold meal delivered late")
CANCEL = ("my gym membership", "a dentist appointment", "a hotel booking for next month", "a magazine subscription",
          "my place on a cooking course")
SUMMARY_ASKS_3 = ("Summarise this for a ten-year-old:\n\n{paragraph}",
                  "In two sentences, what does this paragraph say?\n\n{paragraph}",
                  "Give this paragraph a title and a one-sentence summary.\n\n{paragraph}",
                  "{paragraph}\n\nWhat are the two most important points above?",
                  "Turn this paragraph into three short bullet points:\n\n{paragraph}",
                  "{paragraph}\n\nCan you sum that up in a sentence?")
PARAGRAPH_TOPICS_3 = ("hot air balloons", "school gardens", "the invention of the radio", "migrating birds",
                      "street food markets", "deep sea fish", "four-day working weeks", "the pyramids of Egypt",
                      "night buses", "sleep in teenagers", "cloud computing", "the history of maps", "octopuses",
                      "solar eclipses", "board games")
WANTS = ("I would like", "We need", "Do you have", "I am looking for")
WANTED = ("a room with two beds", "a table near the window", "a cheaper ticket", "a map of the old town",
          "something for a headache", "a charger for my phone", "a smaller size")
WANT_TAILS = ("", " for tonight", ", please", " before Friday")
TRANSLATE_ASKS_3 = ('How would I say "{s}" politely in {L}?', 'Translate into {L} and explain the word order: "{s}"',
                    'Give me the {L} for: "{s}"', 'I need this in {L}: "{s}"')
PHENOMENA_3 = ("our ears pop on a plane", "bread goes stale", "stars twinkle", "we get goosebumps",
               "a rubbed balloon sticks to a wall", "the sky turns red at sunset", "bicycles stay upright when moving")
EVENTS = ("you put metal in a microwave", "a country prints too much money", "a bee stings you",
          "the body does not get enough water", "a phone battery gets very cold", "two tectonic plates collide")
MYTHS = ("goldfish only remember things for three seconds", "lightning never strikes the same place twice",
         "we only use ten percent of our brains", "cracking your knuckles causes arthritis", "bulls hate the colour red")
IDIOMS = ("break the ice", "a piece of cake", "once in a blue moon", "hit the nail on the head", "under the weather",
          "cost an arm and a leg")

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


def _arithmetic2(r: random.Random) -> str:
    a, n, m, p = r.randint(12, 99), r.randint(2, 9), r.randint(3, 12), r.choice((4, 8, 12, 15, 20, 35))
    name, other = r.sample(NAMES, 2)
    forms = (
        f"If I put {a} dollars aside every {r.choice(('week', 'month'))}, how long until I have {a * m * 7} dollars?",
        f"A town had {a * 100} people and grew by {p}%. How many people live there now?",
        f"A room is {m} m long and {n + 2} m wide. How many square metres of carpet do I need?",
        f"A recipe for {n} people needs {a * 10} grams of flour. How much flour do I need for {m} people?",
        f"A film starts at {r.randint(6, 10)}:{r.choice(('10', '25', '40', '55'))} pm and lasts {a + 60} minutes. "
        "When does it end?",
        f"What is the average of {', '.join(str(r.randint(3, 99)) for _ in range(n))}?",
        f"Which is cheaper per item: {n} {r.choice(ITEMS)} for {a} dollars or {m} for {a * m // n + r.randint(-5, 5)}"
        " dollars?",
        f"Split {a * 20} dollars between {name} and {other} in the ratio {n}:{m}.",
        f"How many miles is {a * 5} kilometres? Use 1 mile = 1.609 km.",
        f"What is {n}/{m + n} of {(m + n) * a}? Show the steps.",
        f"A shirt costs {a} dollars. It is {p}% off today. What is the new price?",
    )
    return r.choice(forms)


def _snippet(r: random.Random) -> str:
    v, n, k = r.choice(VAR_NAMES), r.randint(3, 12), r.randint(2, 5)
    return r.choice((
        f"{v} = 0\nfor i in range({n}):\n    if i % {k} == 0:\n        {v} += i\nprint({v})",
        f"{v} = [x * {k} for x in range({n}) if x % 2 == 1]\nprint({v})",
        f"def f(n):\n    return 1 if n <= 1 else n * f(n - 1)\n\nprint(f({min(n, 7)}))",
        f"{v} = {{}}\nfor w in 'the cat and the hat'.split():\n    {v}[w] = {v}.get(w, 0) + 1\nprint({v})",
        f"s = 'specdec'\nprint(s[::-1], s[:{k}], len(s) * {k})",
    ))


def _code2(r: random.Random) -> str:
    pick = r.random()
    if pick < 0.45:
        tail = r.choice(("", " Explain how it works.", " Add tests.", " Comment each line."))
        return f"Write a {r.choice(CODE_LANGS)} function that {r.choice(CODE_TASKS + CODE_TASKS_2)}.{tail}"
    if pick < 0.7:
        topic, lang = r.choice(CODE_TOPICS)
        return r.choice((f"Explain what {topic} is in {lang} and show a short example.",
                         f"When should I use {topic} in {lang}?", f"What is {topic} in {lang}? Keep it short."))
    ask = r.choice(("What does this Python code print?", "Explain what this code does, line by line:",
                    "Walk me through this Python snippet:"))
    return f"{ask}\n\n{_snippet(r)}"


def _email2(r: random.Random) -> str:
    group, news, call = r.choice(EMAIL_GROUPS), r.choice(EMAIL_NEWS), r.choice(EMAIL_CALLS)
    return r.choice((
        f"Write a message to {group}: {news}. Ask them to {call}.",
        f"Let {group} know by email that {news}, and ask them to {call}.",
        f"Write a short note thanking {r.choice(THANKS_WHO)}, who {r.choice(THANKS_FOR)}.",
        f"Write an email to {r.choice(EMAIL_RECIPIENTS)} {r.choice(EMAIL_PURPOSES)}. Keep it under 100 words.",
        f"Help me reply to {r.choice(EMAIL_RECIPIENTS)}: I need to say that {news}.",
    ))


def _sentence2(r: random.Random) -> str:
    place = r.choice(PLACES)
    return r.choice((
        f"{r.choice(SUBJECTS)} {r.choice(ACTIONS)} {r.choice(TIMES)}.",
        r.choice((f"Where is {place}?", f"What time does {place} open?", f"How much is {r.choice(THINGS)}?",
                  f"Is {place} far from here?", f"Can I pay by card at {place}?")),
        f"{r.choice(SUBJECTS)} {r.choice(ACTIONS)}, but {place} is closed {r.choice(TIMES)}.",
        f"If {r.choice(('it rains', 'the shop is closed', 'you are tired', 'the train is late'))}, "
        f"{r.choice(('we will stay at home', 'I will call you', 'we can take a taxi', 'they will wait for us'))}.",
    ))


def _explain2(r: random.Random) -> str:
    a, b = r.choice(PAIRS)
    tail = r.choice(EXPLAIN_TAILS)
    return r.choice((
        f"What is {r.choice(NOUNS)}?{tail}", f"What is {r.choice(NOUNS)}, and why does it matter?{tail}",
        f"Can you explain why {r.choice(PHENOMENA)}?{tail}", f"How does {r.choice(DEVICES)} work?{tail}",
        f"What is the difference between {a} and {b}?{tail}", f"How are {a} and {b} different?{tail}",
        f"Explain {r.choice(CONCEPTS)}{r.choice(AUDIENCES) or '.'}",
    ))


def _translation1(r: random.Random) -> str:
    sentence = f"{r.choice(SUBJECTS)} {r.choice(ACTIONS)} {r.choice(TIMES)}."
    return f"Translate into {r.choice(LANGUAGES)}: \"{sentence}\""


def _howto2(r: random.Random) -> str:
    if r.random() < 0.3:
        return r.choice(RECIPE_ASKS).format(d=r.choice(DISHES), m=r.choice((15, 20, 40)))
    return r.choice(HOWTO_ASKS).format(t=r.choice(HOWTO_TASKS + HOWTO_TASKS_2), w=r.choice((2, 3, 6)))



def _howto3(r: random.Random) -> str:
    return r.choice(HOWTO_ASKS_3).format(t=r.choice(HOWTO_TASKS_3))


def _code3(r: random.Random) -> str:
    pick = r.random()
    if pick < 0.35:
        ask, code = r.choice(BUGGY)
        a, b = r.sample(NAMES, 2)
        n = r.randint(5, 50)
        return f"{ask.format(n=n)}\n\n{code.format(n=n, a=a, b=b)}"
    if pick < 0.6:
        thing, does = r.choice(CLASSES)
        return f"Write a {r.choice(('Python', 'Java', 'JavaScript'))} class for {thing} that can {does}."
    if pick < 0.8:
        return f"Write a regular expression that matches {r.choice(REGEX)}, and explain each part."
    return f"Give me a shell command that {r.choice(SHELL)}."


def _arithmetic3(r: random.Random) -> str:
    a, b, n, m, p = r.randint(20, 90), r.randint(2, 15), r.randint(2, 9), r.randint(3, 12), r.choice((10, 20, 30, 40, 50))
    name, other = r.sample(NAMES, 2)
    forms = (
        f"{name} is {a} years old and {other} is {b} years younger. How old will {other} be in {n} years?",
        f"A tank holds {a * 10} litres and fills at {n} litres per minute. How long until it is half full?",
        f"I earn {a * 100} dollars a month and spend {p}% of it on rent. How much is left?",
        f"What is {a} squared minus {b} squared? Show a quick way to work it out.",
        f"A phone costs {a * 10} dollars, or {m} monthly payments of {a * 10 // m + r.randint(2, 9)} dollars. "
        "How much more do the payments cost in total?",
        f"A class has {n * 10} students and {p}% of them walk to school. How many walk?",
        f"How many seconds are there in {n} hours and {m} minutes?",
        f"{name} runs {n} km in {a // 2 + n * 5} minutes. What is the average time per kilometre?",
        f"Is {a * n + 1} a prime number? Explain how you checked.",
        f"What is {n}/{m + n} plus {b}/{m + n}? Simplify the answer.",
    )
    return r.choice(forms)


def _email3(r: random.Random) -> str:
    return r.choice((
        f"Write a complaint email about {r.choice(COMPLAINTS)}, asking for "
        f"{r.choice(('a refund', 'a replacement', 'an apology'))}.",
        f'Rewrite this message so that it sounds polite: "{r.choice(BLUNT)}"',
        f'Write a reply to this email, saying yes: "{r.choice(INCOMING)}"',
        f'Write a reply to this email, saying no kindly: "{r.choice(INCOMING)}"',
        f"Write a {r.choice(EMAIL_TONES)} email to cancel {r.choice(CANCEL)}.",
    ))


def _translation3(r: random.Random) -> str:
    s = r.choice((f"{r.choice(WANTS)} {r.choice(WANTED)}{r.choice(WANT_TAILS)}.", _sentence2(r)))
    if s.startswith("Do you have"):
        s = s[:-1] + "?"
    return r.choice(TRANSLATE_ASKS_3).format(L=r.choice(LANGUAGES), s=s)


def _explain3(r: random.Random) -> str:
    tail = r.choice(EXPLAIN_TAILS)
    return r.choice((
        f"Why is it that {r.choice(PHENOMENA_3)}?{tail}",
        f"What happens when {r.choice(EVENTS)}?{tail}", f"Is it true that {r.choice(MYTHS)}?{tail}",
        f'What does "{r.choice(IDIOMS)}" mean? Use it in a sentence.',
    ))

# Per set, per kind: the request's text (summaries: (ask with {paragraph}, topic)). No set's draws may
# change: the committed request shards came from them (set 1: 00000-00106, set 2: 00107-00224; tests pin them).
_TEMPLATES = {
    1: {"how-to": lambda r: f"How do I {r.choice(HOWTO_TASKS)}?{r.choice(HOWTO_FORMATS)}",
        "code": _code, "arithmetic": _arithmetic,
        "email": lambda r: f"Write a {r.choice(EMAIL_TONES)} email to {r.choice(EMAIL_RECIPIENTS)} "
                           f"{r.choice(EMAIL_PURPOSES)}.",
        "summary": lambda r: (f"{r.choice(SUMMARY_ASKS)}\n\n{{paragraph}}", r.choice(PARAGRAPH_TOPICS)),
        "translation": _translation1,
        "explanation": lambda r: f"Explain {r.choice(CONCEPTS)}{r.choice(AUDIENCES) or '.'}"},
    2: {"how-to": _howto2, "code": _code2, "arithmetic": _arithmetic2, "email": _email2,
        "summary": lambda r: (r.choice(SUMMARY_ASKS_2), r.choice(PARAGRAPH_TOPICS + PARAGRAPH_TOPICS_2)),
        "translation": lambda r: r.choice(TRANSLATE_ASKS).format(L=r.choice(LANGUAGES), s=_sentence2(r)),
        "explanation": _explain2},
    3: {"how-to": _howto3, "code": _code3, "arithmetic": _arithmetic3, "email": _email3,
        "summary": lambda r: (r.choice(SUMMARY_ASKS_3), r.choice(PARAGRAPH_TOPICS_3)),
        "translation": _translation3, "explanation": _explain3},
}
# Which set's templates a request of each set draws from: (set, cumulative share); one entry draws nothing.
_MIX = {1: ((1, 1.0),), 2: ((2, 0.5), (1, 1.0)), 3: ((3, 0.5), (2, 0.75), (1, 1.0))}
TEMPLATE_SETS = tuple(_TEMPLATES)


def check_template_set(templates: int) -> None:
    """One line when ``templates`` names no template set."""
    if templates not in TEMPLATE_SETS:
        raise ValueError(f"--request-templates must be one of {TEMPLATE_SETS}; got {templates}")


def make_request(r: random.Random, templates: int = 2) -> Request:
    """One request of a kind drawn uniformly from :data:`REQUEST_KINDS`, from template set ``templates``
    (set 2 draws set 1's templates for half its requests; set 3 sets 1 and 2's for a quarter each)."""
    check_template_set(templates)
    kind = r.choice(REQUEST_KINDS)
    mix = _MIX[templates]
    u = r.random() if len(mix) > 1 else 0.0
    drawn = _TEMPLATES[next(k for k, share in mix if u < share)][kind](r)
    if kind == "summary":
        return Request(drawn[0], kind, drawn[1])
    return Request(drawn, kind)
