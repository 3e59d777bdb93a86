// The communicator implementations behind make_communicator (dist.h); each file compiles to a
// stub that says what is missing when its library is not built in.
#pragma once

#include <memory>
#include <string>

#include "genrelab/dist.h"

#if defined(GENRELAB_HAVE_MPI) && GENRELAB_HAVE_MPI
#define GENRELAB_HAVE_MPI_V true
#else
#define GENRELAB_HAVE_MPI_V false
#endif
#if defined(GENRELAB_HAVE_NCCL) && GENRELAB_HAVE_NCCL
#define GENRELAB_HAVE_NCCL_V true
#else
#define GENRELAB_HAVE_NCCL_V false
#endif

namespace genrelab::dist {

// MPI_COMM_WORLD (initialises MPI once per process; host/dist/mpi_comm.cpp).
std::unique_ptr<Communicator> make_mpi_communicator(const World& world);
// NCCL over one GPU per rank (cuda/dist/nccl_comm.cu); the unique id goes by MPI_Bcast under
// mpirun when MPI is built in, else through a file in rendezvous_dir.
std::unique_ptr<Communicator> make_nccl_communicator(const World& world, const std::string& rendezvous_dir,
                                                     double timeout_s);

// Rank 0's `bytes` reach the other ranks by MPI (initialising it). Only under mpirun with MPI.
bool mpi_broadcast_bootstrap(const World& world, void* data, int bytes);

}  // namespace genrelab::dist
