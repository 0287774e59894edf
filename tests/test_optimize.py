

def test_a_slow_key_query_is_cut_off_not_waited_for(maria, monkeypatch):
    import sipup.optimize

    add_orders(datetime(2026, 10, 5), datetime(2026, 11, 20))
    db.session.commit()
    monkeypatch.setattr(sipup.optimize, "KEY_QUERY_SECONDS", 0.000001)
    optimizer = Optimizer(maria, **QUIET)
    with optimizer.engine.connect() as optimizer.conn:
        timings = optimizer.time_key_queries()
        assert optimizer.scalar("SELECT @@max_statement_time") == 0  # the session limit is lifted again
    optimizer.engine.dispose()
    assert None in timings.values()
