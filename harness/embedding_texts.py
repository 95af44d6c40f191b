"""A fixed set of documents and queries for comparing two runs of one embedding model.

Each query has one document it is about, mostly in other words, so the nearest document is a
question of meaning. The tests and bench/backends.py compare ONNX Runtime's vectors with torch's
on this set: the same nearest document for each query, and the cosine of each pair.
"""

from __future__ import annotations

DOCUMENTS = [
    "Cats purr, nap in the sun and chase mice around the garden.",
    "Rain runs down from the mountains to the sea in rivers.",
    "A compiler translates source code into machine instructions.",
    "The central bank raised interest rates to slow inflation.",
    "Tomatoes need full sun, rich soil and regular watering.",
    "The goalkeeper saved a penalty in the final minute of the match.",
    "Antibiotics treat bacterial infections but not viral ones.",
    "The violinist tuned her instrument before the concert began.",
    "Glaciers carve valleys as they slowly move downhill.",
    "Bread rises because yeast releases carbon dioxide in the dough.",
    "The spacecraft entered orbit around Mars after a seven-month trip.",
    "A mortgage is a loan secured by the house it pays for.",
    "Sharks have skeletons made of cartilage rather than bone.",
    "The museum's new wing displays impressionist paintings.",
    "Regular exercise lowers blood pressure and improves sleep.",
    "The train to the airport leaves every fifteen minutes.",
    "Volcanoes erupt when magma rises through cracks in the crust.",
    "Chess players study openings to gain an early advantage.",
    "Solar panels turn sunlight into electricity without moving parts.",
    "The novel follows a family across three generations in Dublin.",
]

# (query, index of the document it is about)
QUERIES = [
    ("feline", 0),
    ("where does water from the hills flow", 1),
    ("turning a program into executable code", 2),
    ("monetary policy and the cost of borrowing", 3),
    ("growing vegetables in the backyard", 4),
    ("football keeper stops a spot kick", 5),
    ("medicine for infections caused by bacteria", 6),
    ("string musician preparing for a performance", 7),
    ("ice shaping the landscape", 8),
    ("why does dough get bigger when baking", 9),
    ("mission to the red planet", 10),
    ("borrowing money to buy a home", 11),
    ("fish without bones", 12),
    ("an art gallery shows Monet", 13),
    ("health benefits of working out", 14),
    ("how often is there a rail connection to the terminal", 15),
    ("lava and eruptions", 16),
    ("board game strategy at the start", 17),
    ("renewable power from the sun", 18),
    ("a book about an Irish family", 19),
]
