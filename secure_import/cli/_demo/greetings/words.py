"""Words the example package uses."""


def polite() -> str:
    return "good day"
