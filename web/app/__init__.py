"""The web app's static files (HTML, CSS, JavaScript modules, icons), installed as `dnadet_tf.webapp`;
`dnadet_tf.exports.web` copies them into DIR/NAME/web/. No Python code."""
