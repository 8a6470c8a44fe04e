# cmake -DIN=FILE -DOUT=FILE.cpp -DSYMBOL=NAME -DNAMESPACE=NS -P EmbedText.cmake
# Writes FILE's text as `extern const char NAME[]` in namespace NS.
file(READ ${IN} text)
string(FIND "${text}" ")berth_embed\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw string delimiter")
endif()
file(WRITE ${OUT}.tmp "// Generated from ${IN}; do not edit.\nnamespace ${NAMESPACE} {\nextern const char ${SYMBOL}[];\nconst char ${SYMBOL}[] = R\"berth_embed(${text})berth_embed\";\n}\n")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
