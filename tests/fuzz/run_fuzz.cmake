# Runs the libFuzzer build of a harness for a bounded time over a scratch
# copy of the checked-in corpus, so new inputs libFuzzer keeps never touch
# the source tree. Invoked by CTest:
#   cmake -DFUZZER=... -DCORPUS=... -DWORK=... -DDICT=... -DTIME=... -P run_fuzz.cmake
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(COPY ${CORPUS}/ DESTINATION ${WORK}/corpus)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${TIME} -timeout=10 -print_final_stats=1
          -dict=${DICT} -artifact_prefix=${WORK}/artifacts/ ${WORK}/corpus
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "fuzzer exited with ${rc}; reproducer in ${WORK}/artifacts/")
endif()
