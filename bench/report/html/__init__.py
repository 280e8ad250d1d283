"""report.html: one self-contained page per run, written beside run.json and junit.xml.

Modules:
    page       the whole page (``render``), plotly.js inlined once
    tables     the verdict summary, every check, the failed results, the nodes
    figures    the plots (RTT heatmap, latency CDFs, CPU over the run), drawn by plotly
    data       what the plots show, read from the run's raw results
"""
