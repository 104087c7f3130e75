"""Whole-file parsing: headers, encodings, delimiters, JSON, ids, limits and every rejection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.catalog import parse as parse_module
from server.catalog.parse import MAX_BYTES, parse_catalog

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def parse(text: str, currency: str = "usd", filename: str = "menu.csv"):  # type: ignore[no-untyped-def]
    return parse_catalog(text.encode(), filename, currency)


def only(text: str, currency: str = "usd"):  # type: ignore[no-untyped-def]
    result = parse(text, currency)
    assert result.errors == []
    (product,) = result.products
    return product


# ---------------------------------------------------------------- accepted files


@pytest.mark.parametrize(
    "header",
    [
        "name,price",
        "Name,Price",
        " NAME , PRICE ",
        "Item,Cost",
        "title,amount",
        "Product,Unit Price",
        "product_name,price",
        "Item Name,Base-Price",
    ],
)
def test_header_synonyms_and_case(header: str) -> None:
    product = only(f"{header}\nLatte,4.50\n")
    assert (product.name, product.price) == ("Latte", 450)


def test_every_optional_column() -> None:
    product = only(
        "ID,Name,Category,Description,Price,Options,Tags,Available,Image URL\n"
        'lat-1,Latte,Coffee,Milky,4.50,"Size: S | L +0.50",Vegan | Hot,no,https://img.example/l.jpg\n'
    )
    assert product.id == "lat-1"
    assert product.category == "Coffee"
    assert product.description == "Milky"
    assert product.options[0].choices[1].price_delta == 50
    assert product.tags == ("vegan", "hot")
    assert product.available is False
    assert product.image_url == "https://img.example/l.jpg"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("name,price\r\nA,1\r\nB,2\r\n", ["A", "B"]),  # CRLF
        ("name,price\n\nA,1\n\n\nB,2\n", ["A", "B"]),  # blank lines
        ("name,price,,\nA,1,,\nB,2,,\n", ["A", "B"]),  # trailing empty columns
        ("name,price\nA,1,,\n", ["A"]),  # trailing empty cells without header
        ("\n\nname,price\nA,1\n", ["A"]),  # blank lines before the header
        ("name,price\n,,\nA,1\n", ["A"]),  # an all-empty row
        ("name;price\nA;1\n", ["A"]),
        ("name\tprice\nA\t1\n", ["A"]),
        ("name;price;description\nA;4,50;Sweet, sticky\n", ["A"]),
        ("sep=;\nname;price;description\nA;4,50;Sweet, sticky\n", ["A"]),  # Excel's hint line
        ("sep=,\r\nname,price\r\nA,1\r\n", ["A"]),
    ],
)
def test_layouts_and_delimiters(text: str, names: list[str]) -> None:
    result = parse(text)
    assert result.errors == []
    assert [p.name for p in result.products] == names


def test_quoted_fields_with_newlines_keep_line_numbers() -> None:
    text = 'name,price,description\nA,1,"line one\nline two"\nB,abc,x\n'
    result = parse(text)
    assert result.errors == [{"line": 4, "column": "price", "message": "'abc' is not a price"}]


def test_semicolon_file_with_decimal_commas() -> None:
    product = only('Item;Price;Options\nPizza;9,50;"Size: 30 cm | 40 cm +4,00"\n', "eur")
    assert product.price == 950
    assert product.options[0].choices[1].price_delta == 400


def test_zero_decimal_currency() -> None:
    product = only('name,price\nRamen,"¥1,200"\n', "jpy")
    assert product.price == 1200


TEXT = "name,price,description\nCafé crème,3.50,Crème brûlée flavour\n"


@pytest.mark.parametrize(
    "data",
    [
        TEXT.encode("utf-8"),
        b"\xef\xbb\xbf" + TEXT.encode("utf-8"),
        TEXT.encode("utf-16"),  # with a BOM
        TEXT.encode("utf-16-le"),
        TEXT.encode("utf-16-be"),
        TEXT.encode("cp1252"),
        TEXT.encode("latin-1"),
    ],
    ids=["utf-8", "utf-8-bom", "utf-16", "utf-16-le", "utf-16-be", "cp1252", "latin-1"],
)
def test_encodings(data: bytes) -> None:
    result = parse_catalog(data, "menu.csv", "usd")
    assert result.errors == []
    (product,) = result.products
    assert product.name == "Café crème"
    assert product.description == "Crème brûlée flavour"


def test_cp1252_euro_sign_in_price() -> None:
    result = parse_catalog("name;price\nTea;2,50 €\n".encode("cp1252"), "m.csv", "eur")
    assert [p.price for p in result.products] == [250]


def test_ids_from_column_or_slug_and_deduplicated() -> None:
    result = parse(
        "id,name,category,price\n"
        "latte,Latte,Coffee,4\n"
        ",Latte,Iced,5\n"  # slug "latte" is taken by the explicit id
        ",Café Latte,Other,5\n"
        ",Cafe Latte,Tea,5\n"
        ",☕,Tea,1\n"
        "SKU 9,Tea,Tea,2\n"
    )
    assert result.errors == []
    assert [p.id for p in result.products] == [
        "latte",
        "latte-2",
        "cafe-latte",
        "cafe-latte-2",
        "item",
        "SKU-9",
    ]


def test_sku_column_is_the_id() -> None:
    assert only("SKU,Title,Price\nAB-1,Tea,2\n").id == "AB-1"


def test_json_list_and_object() -> None:
    products = [
        {"id": "tea", "name": "Tea", "price": 2.5, "tags": ["Vegan"], "available": False},
        {"Name": "Cake", "Cost": "$3", "options": "Size: S | L +1"},
        {
            "name": "Pie",
            "price": 4,
            "options": [
                {"name": "Cream", "min": 0, "max": 1, "choices": [{"name": "Yes", "price": 0.5}]}
            ],
        },
    ]
    for data in (products, {"products": products}):
        result = parse_catalog(json.dumps(data).encode(), "menu.json", "usd")
        assert result.format == "json"
        assert result.errors == []
        tea, cake, pie = result.products
        assert (tea.price, tea.tags, tea.available) == (250, ("vegan",), False)
        assert (cake.id, cake.price, cake.options[0].choices[1].price_delta) == ("cake", 300, 100)
        assert pie.options[0].choices[0].price_delta == 50 and pie.options[0].min_choices == 0


def test_example_files_parse_cleanly() -> None:
    formats = {
        "coffee.csv": "csv",
        "pizzeria.csv": "csv",
        "bakery.csv": "csv",
        "juice_bar.json": "json",
        "shopify_export.csv": "shopify",
        "woocommerce_export.csv": "woocommerce",
    }
    for name, fmt in formats.items():
        currency = "eur" if name == "pizzeria.csv" else "usd"
        result = parse_catalog((EXAMPLES / name).read_bytes(), name, currency)
        assert result.errors == [], name
        assert result.format == fmt
        assert result.products, name
    coffee = parse_catalog((EXAMPLES / "coffee.csv").read_bytes(), "coffee.csv", "usd").products
    croissant = next(p for p in coffee if p.id == "croissant")
    assert croissant.price == 325


# ---------------------------------------------------------------- warnings


def test_missing_description_is_a_warning_not_an_error() -> None:
    result = parse("name,price\nTea,2\n")
    assert result.errors == []
    assert result.warnings == [
        {"line": 2, "column": "description", "message": "'Tea' has no description"}
    ]


def test_many_missing_descriptions_are_summarised() -> None:
    rows = "".join(f"Item {i},1\n" for i in range(30))
    result = parse("name,price\n" + rows)
    assert len(result.warnings) == 11
    assert result.warnings[-1]["message"] == "20 more like: no description"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,price,colour,description\nA,1,red,x\n", "column 'colour' is not used"),
        ("name,title,price,description\nA,B,1,x\n", "column 'title' repeats 'name' and is ignored"),
        (
            "name,price,image,description\nA,1,javascript:alert(1),x\n",
            "is not an http(s) URL and is ignored",
        ),
    ],
)
def test_warnings(text: str, message: str) -> None:
    result = parse(text)
    assert result.errors == []
    assert any(message in w["message"] for w in result.warnings), result.warnings


def test_bad_image_url_is_dropped() -> None:
    assert only("name,price,image,description\nA,1,javascript:alert(1),x\n").image_url is None


# ---------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "name,price\nLatte,abc\n",
            {"line": 2, "column": "price", "message": "'abc' is not a price"},
        ),
        (
            "Item,Cost\nLatte,abc\n",
            {"line": 2, "column": "Cost", "message": "'abc' is not a price"},
        ),
        (
            "name,price\nLatte,-1\n",
            {"line": 2, "column": "price", "message": "'-1' is negative; prices must be 0 or more"},
        ),
        ("name,price\nLatte,\n", {"line": 2, "column": "price", "message": "price is empty"}),
        ("name,price\n,4\n", {"line": 2, "column": "name", "message": "name is empty"}),
        (
            "description\nx\n",
            {
                "line": 1,
                "column": "name",
                "message": "no 'name' column (columns found: 'description')",
            },
        ),
        (
            "name\nLatte\n",
            {"line": 1, "column": "price", "message": "no 'price' column (columns found: 'name')"},
        ),
        (
            "name,price,options\nLatte,4,Size Small | Large\n",
            {
                "line": 2,
                "column": "options",
                "message": "option group 'Size Small | Large' needs a name and a colon, like 'Size: Small | Large +0.50'",
            },
        ),
        (
            "name,price,options\nLatte,1,Size: S | L -2\n",
            {
                "line": 2,
                "column": "options",
                "message": "option group 'Size' makes the price negative",
            },
        ),
        (
            "name,price,available\nLatte,4,maybe\n",
            {
                "line": 2,
                "column": "available",
                "message": "'maybe' is not yes/no (use yes, no, true, false, 1, 0 or 'sold out')",
            },
        ),
        (
            "id,name,price\nx,Latte,4\nx,Mocha,5\n",
            {"line": 3, "column": "id", "message": "id 'x' is used twice (also on line 2)"},
        ),
        (
            "name,price\nLatte,4\nlatte,5\n",
            {"line": 3, "column": "name", "message": "'latte' appears twice (also on line 2)"},
        ),
        (
            "name,price\nLatte,4,50\n",
            {
                "line": 2,
                "column": None,
                "message": "3 cells but the header has 2; quote values that contain the delimiter",
            },
        ),
        (
            "name,price\n" + "x" * 201 + ",1\n",
            {
                "line": 2,
                "column": "name",
                "message": "name is 201 characters long; the limit is 200",
            },
        ),
        (
            "name,price,category\nA,1," + "c" * 121 + "\n",
            {
                "line": 2,
                "column": "category",
                "message": "category is 121 characters long; the limit is 120",
            },
        ),
        ("", {"line": None, "column": None, "message": "the file is empty"}),
        ("\n\n", {"line": None, "column": None, "message": "the file is empty"}),
    ],
)
def test_rejections(text: str, error: dict) -> None:
    result = parse(text)
    assert error in result.errors, result.errors
    assert result.products == []


WHOLE_KRONUR = "ISK prices must be whole krónur, without decimals"


@pytest.mark.parametrize(
    ("text", "filename", "line", "column", "bad"),
    [
        ("name,price\nKaffi,450\nKleina,350.50\n", "menu.csv", 3, "price", "'350.50'"),
        ("Item;Price\nKaffi;450\nKleina;350,50 kr\n", "menu.csv", 3, "Price", "'350,50 kr'"),
        (
            'name,price,options\nKaffi,450,"Stærð: Lítill | Stór +50.50"\n',
            "menu.csv",
            2,
            "options",
            "option 'Stór +50.50' in 'Stærð': '+50.50'",
        ),
        (
            '[\n  {"name": "Kaffi", "price": 450},\n  {"name": "Kleina", "price": 350.5}\n]',
            "menu.json",
            3,
            "price",
            "'350.5'",
        ),
        (
            "Handle,Title,Option1 Name,Option1 Value,Variant Price\n"
            "peysa,Lopapeysa,Stærð,S,19990\npeysa,,Stærð,L,21990.90\n",
            "products_export.csv",
            3,
            "Variant Price",
            "'21990.90'",
        ),
    ],
)
def test_isk_prices_with_decimals_are_rejected_by_line(
    text: str, filename: str, line: int, column: str, bad: str
) -> None:
    """Stripe charges ISK only in whole krónur: a checkout of 350.50 kr would fail there."""
    result = parse_catalog(text.encode(), filename, "isk")
    assert result.products == []
    assert [(e["line"], e["column"]) for e in result.errors] == [(line, column)], result.errors
    message = result.errors[0]["message"]
    assert bad in message and WHOLE_KRONUR in message


def test_isk_prices_in_whole_kronur_are_kept_in_hundredths() -> None:
    product = only('Item;Price;Options\nKaffi;"1.450 kr";"Stærð: Lítill | Stór +200"\n', "ISK")
    assert product.price == 145000
    assert [c.price_delta for c in product.options[0].choices] == [0, 20000]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[1, 2", 1, "not valid JSON"),
        ('{"nope": 1}', None, "must be a list of products"),
        ("[1]", 1, "product 1 is not an object"),
        ('[{"name": "A"}]', 1, "product 1 has no 'price'"),
        ('[{"name": "A", "price": "abc"}]', 1, "'abc' is not a price"),
        ('[{"name": ["A"], "price": 1}]', 1, "name must be text"),
    ],
)
def test_json_rejections(text: str, line: int | None, message: str) -> None:
    result = parse_catalog(text.encode(), "menu.json", "usd")
    assert result.products == []
    assert any(e["line"] == line and message in e["message"] for e in result.errors), result.errors


@pytest.mark.parametrize(
    "text",
    [
        '[\n  {"name": "A", "price": 1},\n  {"name": "B",\n   "price": "x"},\n  {"name": "C", "price": "y"}\n]',
        '{"shop": {"name": "x"},\n "products": [\n  {"name": "A", "price": 1},\n  {"name": "B",\n   "price": "x"},\n  {"name": "C", "price": "y"}]}',
    ],
)
def test_json_errors_name_the_line_where_the_product_starts(text: str) -> None:
    result = parse_catalog(text.encode(), "menu.json", "usd")
    offset = 1 if text.startswith("{") else 0
    assert [e["line"] for e in result.errors] == [3 + offset, 5 + offset]


def test_every_problem_is_listed_by_line() -> None:
    result = parse("name,price,options\nA,abc,\nB,-2,\nC,3,Size\nD,4,\nA,5,\n")
    assert [(e["line"], e["column"]) for e in result.errors] == [
        (2, "price"),
        (3, "price"),
        (4, "options"),
    ]


def test_file_over_5_mb_is_refused() -> None:
    result = parse_catalog(b"x" * (MAX_BYTES + 1), "big.csv", "usd")
    assert result.errors[0]["message"] == "the file is 5.2 MB; the limit is 5 MB"


def test_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_module, "MAX_ROWS", 3)
    result = parse("name,price\n" + "".join(f"P{i},1\n" for i in range(5)))
    assert result.errors == [
        {"line": 5, "column": None, "message": "more than 3 rows; split the catalog"}
    ]


def test_errors_are_capped() -> None:
    result = parse("name,price\n" + "".join(f"P{i},abc\n" for i in range(300)))
    assert len(result.errors) == 201
    assert result.errors[-1]["message"] == "more than 200 problems; fix these first"


def test_invalid_utf16_is_an_error() -> None:
    result = parse_catalog(b"\xff\xfe" + b"\x00\xd8" + b"a\x00", "m.csv", "usd")
    assert "not valid UTF-16" in result.errors[0]["message"]


def test_json_with_a_number_too_long_for_int_is_an_error_not_a_crash() -> None:
    result = parse_catalog(b'[{"name": "A", "price": ' + b"9" * 5000 + b"}]", "menu.json", "usd")
    assert result.products == []
    assert any("number is too long" in e["message"] for e in result.errors), result.errors


def test_json_nested_too_deeply_is_an_error_not_a_crash() -> None:
    result = parse_catalog(b"[" * 5000, "menu.json", "usd")
    assert result.products == []
    assert any("nested too deeply" in e["message"] for e in result.errors), result.errors
