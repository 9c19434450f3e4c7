from attnrec.explain.reason import listed, reason


def test_a_counterfactual_reason_names_its_items_and_what_removing_them_does():
    text = reason(["Heat", "Ronin"], [("genres", "Action"), ("year", "1990s")], 10)
    assert text == ("Recommended because of Heat and Ronin in your history, with genres Action and year 1990s "
                    "counting most; without both, this item would not be in your top 10.")
    assert reason(["Heat"], [], 5) == ("Recommended because of Heat in your history; without it, this item would not "
                                       "be in your top 5.")
    assert "without those 3," in reason(["a", "b", "c"], [], 10)
    assert "with year 1990s and 2000s counting most" in reason(["a"], [("year", "1990s"), ("year", "2000s")], None)


def test_without_a_counterfactual_it_claims_no_more_than_the_top_items():
    assert reason(["a", "b", "c"], [], None) == "Recommended because of a, b and c in your history."
    assert "without" not in reason(["a"], [("brand", "B")], None)
    assert reason([], [], None).startswith("Recommended from your history as a whole")
    assert listed(["x"]) == "x" and listed(["x", "y"]) == "x and y"
