"""The viewer: what the page computes, draws and serves (``app.py`` lays it out with Gradio).

Its pictures and their style, the payload the browser draws from (``static/*.js``), "How it
learned", the models trained at other δ, the shelf of checkpoints and examples, the answers
shared by every session, the page's events and the scripts' endpoints, serving and ZeroGPU, and
``python -m acol explain`` (a figure). The top layer: it may import every other one.
"""
