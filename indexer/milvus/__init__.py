"""A Milvus collection kept in step with the catalog (`index export --format milvus`) and searched
instead of the local FAISS file (`index search/serve --milvus URI`).

client: where and who (URI, MILVUS_TOKEN), the collection and its encoder pin; sync: the
incremental export; query: filters as Milvus expressions, and the search itself.
"""
